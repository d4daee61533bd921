package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Enroll consumes one use of a token and signs the device's key. It needs
// no client certificate: the token is the credential.
func (s *Server) Enroll(ctx context.Context, req *vigilv1.EnrollRequest) (*vigilv1.EnrollResponse, error) {
	tok, err := identity.ParseToken(req.GetToken())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if tok.CAFingerprint != s.cfg.CA.Fingerprint() {
		return nil, status.Error(codes.PermissionDenied, "enrollment token was issued by a different collector")
	}
	if len(req.GetCsrDer()) == 0 || len(req.GetCsrDer()) > 16<<10 {
		return nil, status.Error(codes.InvalidArgument, "enrollment request needs a certificate request (csr_der) under 16 KiB")
	}
	if len(req.GetHostname()) > 255 || len(req.GetHostFingerprint()) > 128 || len(req.GetAgentVersion()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "enrollment request field too long")
	}
	// Check the CSR before spending a token use on it.
	deviceID, csr, err := pki.CheckCSR(req.GetCsrDer())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	t, err := s.cfg.Store.UseToken(tok.ID, identity.SecretHash(tok.Secret), s.cfg.Now())
	switch {
	case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrTokenExpired), errors.Is(err, store.ErrTokenUsedUp):
		s.log.Warn("enrollment refused", "token", tok.ID, "reason", err, "hostname", req.GetHostname())
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case err != nil:
		return nil, status.Errorf(codes.Internal, "consume token: %v", err)
	}
	certDER, err := s.cfg.CA.SignDevice(deviceID, csr, t.Group)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	now := s.cfg.Now()
	dev := store.Device{
		DeviceID: deviceID, Group: t.Group, Hostname: req.GetHostname(), OS: req.GetOs(), Arch: req.GetArch(),
		HostFingerprint: req.GetHostFingerprint(), EnrolledAt: now, TokenID: t.ID,
		AgentVersion: req.GetAgentVersion(), LastSeen: now,
	}
	if err := s.cfg.Store.PutDevice(dev); err != nil {
		return nil, status.Errorf(codes.Internal, "record device: %v", err)
	}
	s.log.Info("device enrolled", "device", deviceID, "group", t.Group, "hostname", req.GetHostname(), "token", t.ID)
	return &vigilv1.EnrollResponse{
		DeviceId: deviceID, Group: t.Group, ClientCertDer: certDER, CaCertDer: s.cfg.CA.CACert.Raw,
		EvidenceRecipient: s.cfg.EvidenceRecipient,
	}, nil
}
