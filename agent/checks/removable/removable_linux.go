package removable

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// linuxSource reads mounts from mountinfo and device facts from sysfs.
type linuxSource struct {
	mountinfo string        // /proc/self/mountinfo
	sys, dev  string        // /sys, /dev
	interval  time.Duration // fallback re-read interval

	fd        int // mountinfo opened for poll(2) POLLPRI (mount table changes); -1 if not
	wake      int // eventfd that ends a poll when Wait's ctx ends; -1 if none
	last      []byte
	lastMedia []Medium
}

func newSource() (source, error) {
	// The kernel flags every mount change (POLLPRI), so the interval is
	// only a safety net; a short one cost idle CPU for nothing.
	return newLinuxSource("/proc/self/mountinfo", "/sys", "/dev", time.Minute), nil
}

func newLinuxSource(mountinfo, sys, dev string, interval time.Duration) *linuxSource {
	s := &linuxSource{mountinfo: mountinfo, sys: sys, dev: dev, interval: interval, fd: -1, wake: -1}
	return s
}

// List re-reads mountinfo and only looks at sysfs when it changed.
func (s *linuxSource) List(ctx context.Context) ([]Medium, error) {
	data, err := os.ReadFile(s.mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	if s.last != nil && bytes.Equal(data, s.last) {
		return append([]Medium(nil), s.lastMedia...), nil
	}
	media := linuxMedia(parseMountinfo(string(data)), s.sys, s.dev)
	s.last, s.lastMedia = data, media
	return append([]Medium(nil), media...), nil
}

// Wait sleeps up to the interval, waking early when the kernel flags a
// mount table change: /proc/self/mountinfo raises POLLPRI on every mount
// and unmount (proc(5)). On a regular file (tests) poll never reports
// POLLPRI, so this is plain interval polling.
func (s *linuxSource) Wait(ctx context.Context) {
	if s.fd < 0 {
		if fd, err := unix.Open(s.mountinfo, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			s.fd = fd
		}
	}
	if s.wake < 0 {
		if fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
			s.wake = fd
		}
	}
	var cnt [8]byte
	if s.wake >= 0 {
		// A count left by an earlier Wait's ctx must not end this one.
		_, _ = unix.Read(s.wake, cnt[:])
		// Block in poll for the whole interval and let ctx's end wake it:
		// polling in short steps woke the process (and the Go runtime's
		// sysmon with it) five times a second, most of the idle agent's
		// CPU.
		wake := s.wake
		stop := context.AfterFunc(ctx, func() {
			_, _ = unix.Write(wake, binary.NativeEndian.AppendUint64(nil, 1))
		})
		defer stop()
	}
	deadline := time.Now().Add(s.interval)
	for ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		step := min(left, 200*time.Millisecond) // honour ctx promptly
		if s.fd >= 0 && s.wake >= 0 {
			step = left
		}
		if s.fd < 0 {
			select {
			case <-ctx.Done():
			case <-time.After(step):
			}
			continue
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLPRI}}
		if s.wake >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(s.wake), Events: unix.POLLIN})
		}
		n, err := unix.Poll(fds, int(step/time.Millisecond)+1)
		if err == nil && n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			time.Sleep(50 * time.Millisecond) // let udisks finish mounting partitions of the same stick
			return
		}
		if err == nil && len(fds) > 1 && fds[1].Revents != 0 {
			_, _ = unix.Read(s.wake, cnt[:])
			return // ctx ended
		}
		if err != nil && err != unix.EINTR {
			unix.Close(s.fd)
			s.fd = -1
		}
	}
}

// Close releases the poll descriptor.
func (s *linuxSource) Close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	if s.wake >= 0 {
		unix.Close(s.wake)
		s.wake = -1
	}
}
