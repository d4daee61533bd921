package removable

import (
	"bytes"
	"context"
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
	last      []byte
	lastMedia []Medium
}

func newSource() (source, error) {
	return newLinuxSource("/proc/self/mountinfo", "/sys", "/dev", time.Second), nil
}

func newLinuxSource(mountinfo, sys, dev string, interval time.Duration) *linuxSource {
	s := &linuxSource{mountinfo: mountinfo, sys: sys, dev: dev, interval: interval, fd: -1}
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
	deadline := time.Now().Add(s.interval)
	for ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		step := min(left, 200*time.Millisecond) // honour ctx promptly
		if s.fd < 0 {
			select {
			case <-ctx.Done():
			case <-time.After(step):
			}
			continue
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLPRI}}
		n, err := unix.Poll(fds, int(step/time.Millisecond)+1)
		if err == nil && n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			time.Sleep(50 * time.Millisecond) // let udisks finish mounting partitions of the same stick
			return
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
}
