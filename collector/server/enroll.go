package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Enrollment refusal reasons, as counted in metrics and the aggregated log.
const (
	reasonRateLimited   = "rate_limited"
	reasonMalformed     = "malformed_request"
	reasonOtherCA       = "token_other_collector"
	reasonTokenUnknown  = "token_unknown"
	reasonTokenExpired  = "token_expired"
	reasonTokenUsedUp   = "token_used_up"
	reasonRevoked       = "revoked"
	reasonInternalError = "internal"
)

// Enroll consumes one use of a token and signs the device's key. It needs
// no client certificate: the token is the credential. Failures are rate
// limited per source address and logged in aggregate.
func (s *Server) Enroll(ctx context.Context, req *vigilv1.EnrollRequest) (*vigilv1.EnrollResponse, error) {
	src := sourceAddr(ctx)
	if wait := s.enrollFails.wait(src); wait > 0 {
		s.cfg.Metrics.Enrollment(false, reasonRateLimited)
		s.refusals.refused(src, reasonRateLimited)
		wait = wait.Round(time.Second) + time.Second
		return nil, resourceExhausted(fmt.Sprintf("too many failed enrollments from %s: retry in %s", src, wait), wait)
	}
	resp, reason, err := s.enroll(ctx, req)
	if err != nil {
		s.cfg.Metrics.Enrollment(false, reason)
		if reason == reasonInternalError {
			// The collector's fault, not the caller's: no penalty, always logged.
			s.log.Error("enrollment failed", "source", src.String(), "err", err)
			return nil, err
		}
		s.enrollFails.failed(src)
		tokID := ""
		if t, perr := identity.ParseToken(req.GetToken()); perr == nil {
			tokID = t.ID
		}
		s.refusals.refused(src, reason, "token", tokID, "hostname", limit(req.GetHostname(), 64), "err", status.Convert(err).Message())
		return nil, err
	}
	s.cfg.Metrics.Enrollment(true, "")
	return resp, nil
}

func (s *Server) enroll(_ context.Context, req *vigilv1.EnrollRequest) (*vigilv1.EnrollResponse, string, error) {
	if err := checkEnrollRequest(req); err != nil {
		return nil, reasonMalformed, status.Error(codes.InvalidArgument, err.Error())
	}
	tok, err := identity.ParseToken(req.GetToken())
	if err != nil {
		return nil, reasonMalformed, status.Error(codes.InvalidArgument, err.Error())
	}
	if tok.CAFingerprint != s.cfg.CA.Fingerprint() {
		return nil, reasonOtherCA, status.Error(codes.PermissionDenied, "enrollment token was issued by a different collector")
	}
	if len(req.GetCsrDer()) == 0 || len(req.GetCsrDer()) > 16<<10 {
		return nil, reasonMalformed, status.Error(codes.InvalidArgument, "enrollment request needs a certificate request (csr_der) under 16 KiB")
	}
	// Check the CSR before spending a token use on it.
	deviceID, csr, err := pki.CheckCSR(req.GetCsrDer())
	if err != nil {
		return nil, reasonMalformed, status.Error(codes.InvalidArgument, err.Error())
	}
	// A revoked key stays revoked whatever token it brings: the device ID
	// is derived from the key, so this is a check on the key itself.
	if err := s.checkNotRevoked(deviceID); err != nil {
		if status.Code(err) == codes.Internal {
			return nil, reasonInternalError, err
		}
		return nil, reasonRevoked, err
	}
	t, err := s.cfg.Store.UseToken(tok.ID, identity.SecretHash(tok.Secret), s.cfg.Now())
	switch {
	case errors.Is(err, store.ErrTokenUnknown):
		return nil, reasonTokenUnknown, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, store.ErrTokenExpired):
		return nil, reasonTokenExpired, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, store.ErrTokenUsedUp):
		return nil, reasonTokenUsedUp, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return nil, reasonInternalError, status.Errorf(codes.Internal, "consume token: %v", err)
	}
	certDER, err := s.cfg.CA.SignDevice(deviceID, csr, t.Group)
	if err != nil {
		return nil, reasonInternalError, status.Error(codes.Internal, err.Error())
	}
	now := s.cfg.Now()
	dev := store.Device{
		DeviceID: deviceID, Group: t.Group, School: t.School, Hostname: req.GetHostname(), OS: req.GetOs(), Arch: req.GetArch(),
		HostFingerprint: req.GetHostFingerprint(), EnrolledAt: now, TokenID: t.ID,
		AgentVersion: req.GetAgentVersion(), LastSeen: now,
	}
	recipient, err := s.evidenceRecipient(t.School)
	if err != nil {
		return nil, reasonInternalError, status.Errorf(codes.Internal, "evidence key of the school: %v", err)
	}
	if err := s.cfg.Store.PutDevice(dev); err != nil {
		return nil, reasonInternalError, status.Errorf(codes.Internal, "record device: %v", err)
	}
	s.log.Info("device enrolled", "device", deviceID, "school", store.SchoolOf(t.School), "group", t.Group, "hostname", req.GetHostname(), "token", t.ID)
	resp := &vigilv1.EnrollResponse{
		DeviceId: deviceID, Group: t.Group, ClientCertDer: certDER, CaCertDer: s.cfg.CA.CACert.Raw,
		EvidenceRecipient: recipient,
	}
	if s.cfg.Upgrades != nil {
		resp.ReleasePublicKey = s.cfg.Upgrades.PublicKey()
	}
	return resp, "", nil
}

// checkNotRevoked refuses a key that has a revocation record, or whose
// device record is marked revoked (revocations made before the record
// existed).
func (s *Server) checkNotRevoked(deviceID string) error {
	rv, revoked, err := s.cfg.Store.Revoked(deviceID)
	if err != nil {
		return status.Errorf(codes.Internal, "check revocation: %v", err)
	}
	if !revoked {
		if dev, ok := s.cfg.Store.GetDevice(deviceID); !ok || !dev.Revoked {
			return nil
		}
	}
	when := ""
	if !rv.RevokedAt.IsZero() {
		when = " on " + rv.RevokedAt.UTC().Format(time.RFC3339)
	}
	return status.Errorf(codes.PermissionDenied,
		"this device's key (device %s) was revoked%s; it cannot enroll again with any token until a technician lifts the revocation "+
			"(vigil-collector devices unrevoke --device %s --reason TEXT), or the agent is reinstalled with a new key", deviceID, when, deviceID)
}
