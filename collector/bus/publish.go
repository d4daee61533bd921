package bus

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Publisher publishes a device's validated findings to the stream. Its
// CommitFindings has the store's signature, so the gRPC server commits
// through it exactly as it would into Badger: it returns only once
// JetStream has acknowledged the message, which with SyncAlways means it
// was fsynced (on a quorum of nodes for an R3 stream).
type Publisher struct {
	JS jetstream.JetStream
	// SchoolOf names the school a device enrolled in: its findings go to
	// that school's subjects, which only that school's storer consumes.
	// Nil publishes every device under the default school.
	SchoolOf SchoolOf
	// InFlight bounds the publishes waiting for their PubAck (nil: a
	// bound of DefaultMaxInFlight of its own).
	InFlight *InFlight

	own InFlight
}

// SchoolOf answers the school a device is recorded in ("" or "default" for
// the default school); an error when the record cannot be read, so nothing
// is published under a school guessed at.
type SchoolOf func(deviceID string) (string, error)

func (f SchoolOf) of(deviceID string) (string, error) {
	if f == nil {
		return DefaultSchool, nil
	}
	school, err := f(deviceID)
	if err != nil {
		return "", fmt.Errorf("bus: school of device %s: %w", deviceID, err)
	}
	if school == "" {
		school = DefaultSchool
	}
	return school, nil
}

// CommitFindings publishes findings (all of one device) as one FindingBatch
// and waits for the PubAck. stored counts the findings now held durably by
// the stream; a batch JetStream already held (same Nats-Msg-Id within the
// dupe window) counts as dups. Whether a finding was new to the store is
// only known once the storer commits it.
func (p *Publisher) CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error) {
	if len(findings) == 0 {
		return 0, 0, nil
	}
	device := findings[0].GetDeviceId()
	for _, f := range findings {
		if f.GetDeviceId() != device {
			return 0, 0, fmt.Errorf("bus: one batch holds findings of devices %q and %q", device, f.GetDeviceId())
		}
	}
	data, err := proto.Marshal(&vigilv1.FindingBatch{Findings: findings})
	if err != nil {
		return 0, 0, fmt.Errorf("bus: encode batch of %s: %w", device, err)
	}
	school, err := p.SchoolOf.of(device)
	if err != nil {
		return 0, 0, err
	}
	msg := &nats.Msg{Subject: Subject(school, device), Data: data}
	var ack *jetstream.PubAck
	err = p.InFlight.or(&p.own).do(ctx, "findings of "+device, func() (err error) {
		ack, err = p.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(MsgID(device, findings)), jetstream.WithExpectStream(StreamName))
		return err
	})
	if errors.Is(err, store.ErrOverloaded) {
		return 0, 0, err
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.ErrorCode(10077) {
			// The stream refused to store it (MaxBytes reached, DiscardNew):
			// the agent keeps it in its spool and retries after a delay.
			return 0, 0, fmt.Errorf("%w: findings stream: %v", store.ErrOverloaded, apiErr)
		}
		return 0, 0, fmt.Errorf("bus: publish batch of %s (%d findings): %w", device, len(findings), err)
	}
	if ack.Duplicate {
		return 0, len(findings), nil
	}
	return len(findings), 0, nil
}

// MsgID names a batch for JetStream's dedupe by its device and the seqs it
// holds: an agent resending a batch it got no ack for sends the same seqs,
// and a seq names one finding of that device for good.
func MsgID(device string, findings []*vigilv1.Finding) string {
	h := sha256.New()
	var b [8]byte
	for _, f := range findings {
		binary.BigEndian.PutUint64(b[:], f.GetSeq())
		h.Write(b[:])
	}
	first, last := findings[0].GetSeq(), findings[len(findings)-1].GetSeq()
	return device + ":" + strconv.FormatUint(first, 10) + "-" + strconv.FormatUint(last, 10) + ":" + hex.EncodeToString(h.Sum(nil)[:8])
}
