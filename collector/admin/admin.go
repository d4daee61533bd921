// Package admin is the collector's local control API: HTTP over a Unix
// socket inside the data dir (owner-only), served while the collector runs
// and used by the vigil-collector CLI. Only someone who can read the data
// dir can reach it, which is the same trust as reading the database.
package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// SocketName is the admin socket's file name inside the data dir.
const SocketName = "admin.sock"

// Requester pushes a request to a connected agent (the gRPC server).
type Requester interface {
	Request(ctx context.Context, deviceID, kind string, params map[string]any) (*vigilv1.RequestResult, error)
	Connected(deviceID string) bool
	Disconnect(deviceID string)
}

// Store is what the admin socket needs of the collector's store: device
// records and revocations, findings to list, evidence with its access log,
// the alert an evidence blob belongs to, and token administration.
type Store interface {
	tokens.Store
	ListFindings(ctx context.Context, q store.Query, fn func(*vigilv1.Finding) bool) error
	Devices() []store.Device
	GetDevice(id string) (store.Device, bool)
	Revoke(r store.Revocation) error
	Revoked(deviceID string) (store.Revocation, bool, error)
	Unrevoke(deviceID string) (store.Revocation, error)
	GetAlert(device string, seq uint64) (*store.Alert, error)
	AccessLog() ([]store.AccessEntry, error)
	// The evidence reveal's needs (collector/evidence.Store) and --as.
	evidence.Store
	// The licence register and the ICT inventory (licences.go).
	licences.Register
	inventory.Store
	GetUser(username string) (store.User, error)
	SchoolStore
	Users() ([]store.User, error)
	// A school's export carries its terms and exclusions.
	SchoolTerms() ([]store.SchoolTerm, error)
	TermSuppressions() ([]store.TermSuppression, error)
	TermDecisions() ([]store.TermDecision, error)
	Exclusions() ([]store.Exclusion, error)
}

// Server serves the admin API.
type Server struct {
	// EvidenceKey decrypts evidence for an authorised, logged view.
	EvidenceKey *age.X25519Identity
	Store       Store
	CA          *pki.Authority
	Agents      Requester
	Logger      *slog.Logger
	Now         func() time.Time
	// Tokens is the token policy shared with the console (default: one
	// over Store and CA).
	Tokens *tokens.Service
	// Evidence is the one evidence reveal, shared with the console
	// (console.Server.Evidence); default: one over Store and EvidenceKey
	// for the operator alone.
	Evidence *evidence.Service
	// Audits runs device audits (nil: the audit routes answer 503).
	Audits *audit.Service
	// Releases, when set, serves rollout, rollback and status.
	Releases *Releases
	// Licences and Inventory serve the licence register and the ICT
	// inventory (default: services over Store).
	Licences  *licences.Service
	Inventory *inventory.Service
	// DFE serves the roles register, reviews, fleet checks and the
	// evidence pack (dfe.go; nil: those routes answer 503).
	DFE *DFE
	// Bus, when set (--ingest jetstream), is told of a deleted school so
	// that nothing of it stays queued on NATS or in the devices bucket.
	Bus SchoolBus
	// Keys, when set, holds the schools' evidence keys; a deleted
	// school's is destroyed last (collector/evidencekeys).
	Keys SchoolKeys
	// SchoolRulesDir is DATA/school-rules ("": none): a school's rules
	// overrides are exported with it and removed when it is deleted.
	SchoolRulesDir string
	// SchoolRules, when set, replaces a school's rules overrides once they
	// validate (*rulesdist.Distributor); RulesChanged is then called to
	// push the new bundles.
	SchoolRules interface {
		SetSchoolOverrides(school string, files map[string][]byte) error
	}
	RulesChanged func()
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	// School (ID or name) the token enrolls into; "" is the default.
	School string        `json:"school,omitempty"`
	Group  string        `json:"group"`
	TTL    time.Duration `json:"ttl"`
	Uses   int           `json:"uses"`
}

// TokenResponse answers it.
type TokenResponse = tokens.Issued

// RequestBody is the body of POST /v1/requests.
type RequestBody struct {
	Device  string         `json:"device"`
	Kind    string         `json:"kind"`
	Params  map[string]any `json:"params"`
	Timeout time.Duration  `json:"timeout"`
}

// Listen creates the socket, owner-only, replacing a stale one.
func Listen(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, SocketName)
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("another collector is already serving %s", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict admin socket: %w", err)
	}
	return l, nil
}

// Handler routes the admin API.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tokens", s.createToken)
	mux.HandleFunc("GET /v1/tokens", s.listTokens)
	mux.HandleFunc("POST /v1/tokens/{id}/revoke", s.revokeToken)
	mux.HandleFunc("GET /v1/findings", s.listFindings)
	mux.HandleFunc("GET /v1/devices", s.listDevices)
	mux.HandleFunc("POST /v1/requests", s.request)
	mux.HandleFunc("POST /v1/devices/{id}/revoke", s.revoke)
	mux.HandleFunc("POST /v1/devices/{id}/unrevoke", s.unrevoke)
	mux.HandleFunc("GET /v1/evidence/{device}/{id}", s.evidence)
	mux.HandleFunc("GET /v1/access-log", s.accessLog)
	s.auditRoutes(mux)
	s.releaseRoutes(mux)
	s.licenceRoutes(mux)
	s.dfeRoutes(mux)
	s.schoolRoutes(mux)
	return mux
}

// tokenService is the one place token policy lives (collector/tokens).
func (s *Server) tokenService() *tokens.Service {
	if s.Tokens != nil {
		return s.Tokens
	}
	return &tokens.Service{Store: s.Store, CAFingerprint: s.CA.Fingerprint(), Logger: s.Logger, Now: s.Now}
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode token request: %v", err)
		return
	}
	tok, err := s.tokenService().CreateIn(r.Context(), req.School, req.Group, req.TTL, req.Uses)
	if errors.Is(err, tokens.ErrBadRequest) {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, tok)
}

// TokenInfo describes a stored token (never its secret).
type TokenInfo = tokens.Info

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	out, err := s.tokenService().List(r.Context())
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, out)
}

// revokeToken ends a token now; see tokens.Service.Revoke.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req RevokeRequest
	if err := decodeOptional(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, "decode revoke request: %v", err)
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	info, err := s.tokenService().Revoke(r.Context(), id, who, req.Reason)
	if errors.Is(err, tokens.ErrNotFound) {
		httpError(w, http.StatusNotFound, "no token %q (see `vigil-collector token list`)", id)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, info)
}

func (s *Server) listFindings(w http.ResponseWriter, r *http.Request) {
	var q store.Query
	q.Device = r.URL.Query().Get("device")
	// --school: only the findings of that school's devices.
	school := ""
	if v := r.URL.Query().Get("school"); v != "" {
		sc, err := s.Store.FindSchool(v)
		if errors.Is(err, store.ErrNotFound) {
			httpError(w, http.StatusNotFound, "%v", err)
			return
		}
		if err != nil {
			httpError(w, http.StatusInternalServerError, "find school: %v", err)
			return
		}
		school = sc.ID
	}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			httpError(w, http.StatusBadRequest, "since: %v (want RFC3339, e.g. 2026-11-23T09:00:00Z)", err)
			return
		}
		q.Since = t
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			httpError(w, http.StatusBadRequest, "limit: want a non-negative integer")
			return
		}
		q.Limit = n
	}
	// The store's limit counts before the school filter; count after it.
	limit := q.Limit
	if school != "" {
		q.Limit = 0
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	err := s.Store.ListFindings(r.Context(), q, func(f *vigilv1.Finding) bool {
		if school != "" {
			if limit > 0 && n >= limit {
				return false
			}
			// A device without a record is the default school's, as in
			// collector/tenancy.
			if sc, ok := s.Store.DeviceSchool(f.GetDeviceId()); (ok && sc != school) || (!ok && school != store.DefaultSchool) {
				return true
			}
			n++
		}
		return enc.Encode(findings.ToJSON(f)) == nil
	})
	bw.Flush()
	if err != nil {
		s.Logger.Error("list findings", "err", err)
	}
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	devs := s.Store.Devices()
	for i := range devs {
		devs[i].Connected = s.Agents != nil && s.Agents.Connected(devs[i].DeviceID)
	}
	writeJSON(w, devs)
}

// RevokeRequest is the optional body of POST /v1/devices/{id}/revoke and
// the required body of .../unrevoke.
type RevokeRequest struct {
	Reason string `json:"reason"`
}

// revoke marks a device's key revoked (a lost or stolen laptop, a
// decommissioned image) and ends its stream. The key stays refused, for
// streams and for enrollment with any token, until someone unrevokes it.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req RevokeRequest
	if err := decodeOptional(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, "decode revoke request: %v", err)
		return
	}
	if _, ok := s.Store.GetDevice(id); !ok {
		httpError(w, http.StatusNotFound, "no device %q", id)
		return
	}
	who := whoOf(r)
	now := s.Now()
	if err := s.Store.Revoke(store.Revocation{DeviceID: id, RevokedAt: now, Who: who, Reason: req.Reason}); err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	s.Agents.Disconnect(id)
	if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: who, Action: "revoke-device", DeviceID: id, Reason: req.Reason}); err != nil {
		// The revocation stands (refusing it would be worse); say the log failed.
		s.Logger.Error("device revoked but the access log entry was not written", "device", id, "err", err)
	}
	s.Logger.Warn("device revoked", "device", id, "by", who, "reason", req.Reason)
	writeJSON(w, map[string]any{"device_id": id, "revoked": true})
}

// unrevoke lifts a revocation. It needs who and why, and is written to the
// access log before it takes effect: nothing is lifted if the log cannot be
// written.
func (s *Server) unrevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req RevokeRequest
	if err := decodeOptional(r, &req); err != nil {
		httpError(w, http.StatusBadRequest, "decode unrevoke request: %v", err)
		return
	}
	who := whoOf(r)
	if req.Reason == "" || who == "" {
		httpError(w, http.StatusBadRequest, "lifting a revocation needs who (X-Vigil-User) and a reason")
		return
	}
	if _, revoked, err := s.Store.Revoked(id); err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	} else if dev, ok := s.Store.GetDevice(id); !revoked && !(ok && dev.Revoked) {
		httpError(w, http.StatusNotFound, "device %q is not revoked", id)
		return
	}
	now := s.Now()
	if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: who, Action: "unrevoke-device", DeviceID: id, Reason: req.Reason}); err != nil {
		httpError(w, http.StatusInternalServerError, "access not logged, so the revocation stays: %v", err)
		return
	}
	prev, err := s.Store.Unrevoke(id)
	if errors.Is(err, store.ErrNotRevoked) {
		httpError(w, http.StatusNotFound, "device %q is not revoked", id)
		return
	}
	if errors.Is(err, store.ErrDisposed) {
		httpError(w, http.StatusConflict, "device %q was disposed of: its key stays revoked (see `vigil-collector inventory list`)", id)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	s.Logger.Warn("device revocation lifted", "device", id, "by", who, "reason", req.Reason,
		"revoked_at", prev.RevokedAt, "revoked_by", prev.Who)
	writeJSON(w, map[string]any{"device_id": id, "revoked": false})
}

func whoOf(r *http.Request) string { return r.Header.Get("X-Vigil-User") }

// decodeOptional reads a small JSON body, accepting an empty one.
func decodeOptional(r *http.Request, v any) error {
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// reveal is the one evidence reveal (collector/evidence): the daemon's,
// with the console's routing, or one for the operator alone.
func (s *Server) reveal() *evidence.Service {
	if s.Evidence != nil {
		return s.Evidence
	}
	svc := &evidence.Service{Store: s.Store, Key: s.EvidenceKey, Now: s.Now}
	if s.Keys != nil {
		svc.Keys = s.Keys
	}
	return svc
}

// evidence decrypts one piece of evidence through evidence.Service.Reveal
// (role, routing, the illegal rule, the reason, the access log first). Who
// is the OS user the CLI runs as (X-Vigil-User); ?as=USERNAME reveals as
// that console account, whose role and routing then apply.
func (s *Server) evidence(w http.ResponseWriter, r *http.Request) {
	device, id := r.PathValue("device"), r.PathValue("id")
	who, q := whoOf(r), r.URL.Query()
	if who == "" {
		httpError(w, http.StatusBadRequest, "viewing evidence needs who (X-Vigil-User) and a reason")
		return
	}
	v := evidence.Viewer{Operator: who}
	if as := q.Get("as"); as != "" {
		u, err := s.Store.GetUser(as)
		if errors.Is(err, store.ErrNotFound) {
			httpError(w, http.StatusBadRequest, "--as: no console account %q (see the console's Users page)", as)
			return
		}
		if err != nil {
			httpError(w, http.StatusInternalServerError, "read account %s: %v", as, err)
			return
		}
		v.User = &u
	}
	got, err := s.reveal().Reveal(v, evidence.Request{Device: device, EvidenceID: id, Reason: q.Get("reason")})
	var e *evidence.Error
	switch {
	case err == nil:
	case !errors.As(err, &e):
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	case e.Kind == evidence.IllegalKind:
		httpError(w, http.StatusForbidden, "%s. %s", e.Msg, e.Guidance())
		return
	case e.Kind == evidence.NotAllowed:
		httpError(w, http.StatusForbidden, "%s", e.Msg)
		return
	case e.Kind == evidence.NotFound || e.Kind == evidence.Gone:
		httpError(w, http.StatusNotFound, "%s", e.Msg)
		return
	case e.Kind == evidence.NeedReason:
		httpError(w, http.StatusBadRequest, "%s", e.Msg)
		return
	case e.Kind == evidence.Mismatch:
		httpError(w, http.StatusConflict, "%v", e)
		return
	default:
		httpError(w, http.StatusInternalServerError, "%v", e)
		return
	}
	w.Header().Set("Content-Type", got.MediaType)
	w.Write(got.Data)
}

func (s *Server) accessLog(w http.ResponseWriter, r *http.Request) {
	entries, err := s.Store.AccessLog()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, entries)
}

func (s *Server) request(w http.ResponseWriter, r *http.Request) {
	var req RequestBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode request: %v", err)
		return
	}
	if req.Timeout <= 0 {
		req.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), req.Timeout)
	defer cancel()
	res, err := s.Agents.Request(ctx, req.Device, req.Kind, req.Params)
	if err != nil {
		httpError(w, http.StatusBadGateway, "%v", err)
		return
	}
	out := map[string]any{"ok": res.GetOk(), "error": res.GetError()}
	if res.GetResult() != nil {
		out["result"] = res.GetResult().AsMap()
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, format string, a ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, a...)})
}

// Client talks to a running collector's admin socket.
type Client struct {
	http *http.Client
	sock string
}

// NewClient returns a client for the collector whose data dir is dataDir.
func NewClient(dataDir string) *Client {
	sock := filepath.Join(dataDir, SocketName)
	return &Client{sock: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// Do sends a request and returns the body for 2xx answers; otherwise the
// error the server gave.
func (c *Client) Do(ctx context.Context, method, path string, body any) (io.ReadCloser, error) {
	return c.DoAs(ctx, "", method, path, body)
}

// DoAs is Do on behalf of a named person (recorded in the access log).
func (c *Client) DoAs(ctx context.Context, who, method, path string, body any) (io.ReadCloser, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytesReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vigil-collector"+path, rd)
	if err != nil {
		return nil, err
	}
	if who != "" {
		req.Header.Set("X-Vigil-User", who)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || isConnRefused(err) {
			return nil, fmt.Errorf("the collector is not running (nothing answers on %s): start it with `vigil-collector serve`", c.sock)
		}
		return nil, fmt.Errorf("admin socket %s: %w", c.sock, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return nil, fmt.Errorf("collector refused: %s", e.Error)
	}
	return resp.Body, nil
}
