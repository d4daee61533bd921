package server

import (
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// UpgradeSource decides which release a device is offered and serves its
// bytes (collector/releases).
type UpgradeSource interface {
	PublicKey() ed25519.PublicKey
	Offer(device, group, running, goos, goarch string) *vigilv1.UpgradeOffer
	OpenOffered(device, group, running string, req *vigilv1.DownloadRequest) (*os.File, int64, error)
	Record(device string, rep *vigilv1.UpgradeReport)
}

// downloadChunk bounds each ReleaseChunk: well under the agent's receive
// limit, large enough that a 30 MiB binary is ~120 messages.
const downloadChunk = 256 << 10

// reofferAfter is how long an agent that was offered a release and still
// runs another is left before the offer is repeated: a download that failed
// for a passing reason (network, collector restart) is tried again, while
// one in progress is not disturbed (the agent ignores offers while busy).
const reofferAfter = 5 * time.Minute

// offerUpgradeIfDue sends the group's release to the agent unless it runs it,
// failed it, or was offered it on this stream within reofferAfter.
func (ss *session) offerUpgradeIfDue(src UpgradeSource) {
	if src == nil {
		return
	}
	ss.lastMu.Lock()
	running, goos, goarch := ss.version, ss.os, ss.arch
	ss.lastMu.Unlock()
	o := src.Offer(ss.device, ss.group, running, goos, goarch)
	if o == nil {
		return
	}
	now := time.Now()
	ss.lastMu.Lock()
	due := ss.offered != o.Version || now.Sub(ss.offeredAt) >= reofferAfter
	if due {
		ss.offered, ss.offeredAt = o.Version, now
	}
	ss.lastMu.Unlock()
	if due {
		ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_UpgradeOffer{UpgradeOffer: o}})
	}
}

// PushUpgrades offers the current rollout to every connected agent of
// group (all groups when empty), after a rollout changed.
func (s *Server) PushUpgrades(group string) {
	s.mu.Lock()
	var targets []*session
	for _, ss := range s.sessions {
		if group == "" || ss.group == group {
			targets = append(targets, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range targets {
		// A rollback may offer a version this stream was offered before.
		ss.lastMu.Lock()
		ss.offered = ""
		ss.lastMu.Unlock()
		ss.offerUpgradeIfDue(s.cfg.Upgrades)
	}
}

// DownloadRelease streams the release offered to the calling device.
func (s *Server) DownloadRelease(req *vigilv1.DownloadRequest, stream vigilv1.Collector_DownloadReleaseServer) error {
	deviceID, err := peerDevice(stream.Context())
	if err != nil {
		return err
	}
	dev, ok := s.cfg.Store.GetDevice(deviceID)
	if !ok || dev.Revoked {
		return status.Error(codes.PermissionDenied, "device is not enrolled with this collector (or was revoked): re-enroll")
	}
	if s.cfg.Upgrades == nil {
		return status.Error(codes.NotFound, "this collector serves no releases")
	}
	// A whole school taking a release at once would saturate the link and
	// the collector's CPU (TLS): beyond MaxDownloads, agents are told to
	// come back later, spread by their own jitter.
	select {
	case s.downloads <- struct{}{}:
		defer func() { <-s.downloads }()
	default:
		return resourceExhausted("collector is serving its limit of release downloads; retry later", 5*s.cfg.RetryAfter)
	}
	f, size, err := s.cfg.Upgrades.OpenOffered(deviceID, dev.Group, dev.AgentVersion, req)
	if err != nil {
		return status.Error(codes.NotFound, err.Error())
	}
	defer f.Close()
	if req.GetOffset() < 0 || req.GetOffset() > size {
		return status.Errorf(codes.OutOfRange, "offset %d outside the release's %d bytes", req.GetOffset(), size)
	}
	buf := make([]byte, downloadChunk)
	for off := req.GetOffset(); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			if err := stream.Send(&vigilv1.ReleaseChunk{Offset: off, Data: buf[:n]}); err != nil {
				return err
			}
			off += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off >= size) {
			if errors.Is(err, io.EOF) {
				// The stored file is shorter than its manifest says; the
				// agent would refuse it anyway.
				return status.Error(codes.DataLoss, "release binary shorter than its manifest")
			}
			return status.Errorf(codes.Internal, "read release: %v", err)
		}
	}
	return nil
}
