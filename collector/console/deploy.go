package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/packaging"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/version"
)

// TokenService is the collector's token policy (tokens.Service), the same
// one the CLI reaches through the admin socket.
type TokenService interface {
	packaging.Tokens
	List(ctx context.Context) ([]tokens.Info, error)
}

// DeployConfig turns on the technician's Deploy page: group enrollment
// tokens and per-group agent packages.
type DeployConfig struct {
	Tokens TokenService
	// DefaultCollector is the HOST:PORT packages point devices at unless
	// the technician gives another; empty means every request must say.
	DefaultCollector string
	// AgentDir holds agent binaries as OS-ARCH/vigil-agent[.exe]; empty
	// means where the CLI looks (dist/OS-ARCH next to the collector).
	AgentDir string
}

// deployers: technicians deploy; admins can too (they run the collector).
var deployers = roles(RoleTechnician, RoleAdmin)

func (s *Server) deployRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/deploy", s.api(deployers, s.deployInfo))
	mux.Handle("GET /api/v1/tokens", s.api(deployers, s.listTokens))
	mux.Handle("POST /api/v1/tokens/{id}/revoke", s.api(deployers, s.revokeToken))
	mux.Handle("POST /api/v1/packages", s.api(deployers, s.downloadPackage))
}

func (s *Server) deployOff(w http.ResponseWriter) bool {
	if s.deploy == nil || s.deploy.Tokens == nil {
		jsonError(w, http.StatusServiceUnavailable, "deployment is not configured on this collector")
		return true
	}
	return false
}

func (s *Server) deployInfo(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.deployOff(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"default_collector": s.deploy.DefaultCollector,
		"formats":           []string{string(packaging.Deb), string(packaging.RPM), string(packaging.MSI)},
		"arches":            []string{"amd64", "arm64"},
	})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.deployOff(w) {
		return
	}
	list, err := s.deploy.Tokens.List(r.Context())
	if err != nil {
		s.internal(w, "list tokens", err)
		return
	}
	mine := make([]tokens.Info, 0, len(list))
	for _, t := range list {
		if s.seesToken(&v.User, t) {
			mine = append(mine, t)
		}
	}
	writeJSON(w, http.StatusOK, mine)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.deployOff(w) {
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" || len(req.Reason) > 500 {
		jsonError(w, http.StatusBadRequest, "say why the token is revoked (1-500 characters); it goes in the access log")
		return
	}
	// Another school's token is, to v, one that does not exist.
	list, err := s.deploy.Tokens.List(r.Context())
	if err != nil {
		s.internal(w, "find token", err)
		return
	}
	i := slices.IndexFunc(list, func(t tokens.Info) bool { return t.ID == r.PathValue("id") })
	if i < 0 || !s.seesToken(&v.User, list[i]) {
		jsonError(w, http.StatusNotFound, "no such token")
		return
	}
	info, err := s.deploy.Tokens.Revoke(r.Context(), r.PathValue("id"), v.Username, req.Reason)
	if errors.Is(err, tokens.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "no such token")
		return
	}
	if err != nil {
		s.internal(w, "revoke token", err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

type packageRequest struct {
	Group            string `json:"group"`
	Format           string `json:"format"`
	Arch             string `json:"arch"`
	CollectorAddress string `json:"collector_address"`
	// School the package's devices land in: a school account's own (the
	// default); an admin may name any.
	School string `json:"school,omitempty"`
}

// downloadPackage builds an agent package for a group with a new group
// token (packaging.Make, as the CLI does) and sends it as an attachment.
// It is built to a private temp file first, so a failed build answers with
// an error instead of a truncated package, and a token whose package was
// never delivered is revoked again.
func (s *Server) downloadPackage(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.deployOff(w) {
		return
	}
	var req packageRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if req.Arch == "" {
		req.Arch = "amd64"
	}
	school, err := s.requestSchool(&v.User, req.School)
	if errors.Is(err, store.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "no such school")
		return
	}
	if err != nil {
		s.internal(w, "find the package's school", err)
		return
	}
	if req.CollectorAddress == "" {
		req.CollectorAddress = s.deploy.DefaultCollector
	}
	if req.CollectorAddress == "" {
		jsonError(w, http.StatusBadRequest, "collector_address is required: this collector was started without --agent-address or --server-names, so it does not know the name devices reach it by")
		return
	}
	// Building takes seconds and packages are megabytes; a school link may
	// be slower than the server's general write timeout allows.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(15 * time.Minute))
	f, err := os.CreateTemp("", "vigil-console-package-*")
	if err != nil {
		s.internal(w, "create package file", err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()

	spec := packaging.Spec{Format: packaging.Format(req.Format), Arch: req.Arch, Group: req.Group, Collector: req.CollectorAddress,
		FallbackVersion: version.Version}
	made, err := packaging.Make(r.Context(), packaging.Request{Spec: spec, School: school, AgentDir: s.deploy.AgentDir, Who: v.Username}, s.deploy.Tokens, f)
	if errors.Is(err, packaging.ErrNoAgentBinary) {
		// Not the technician's input: the collector is missing a build.
		jsonError(w, http.StatusFailedDependency, "%v", err)
		return
	}
	if errors.Is(err, packaging.ErrBadSpec) || errors.Is(err, tokens.ErrBadRequest) {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err != nil {
		s.internal(w, "build package", err)
		return
	}
	retire := func(why string) {
		if _, rerr := s.deploy.Tokens.Revoke(context.WithoutCancel(r.Context()), made.Token.ID, v.Username, why); rerr != nil {
			s.log.Error("console: could not revoke the token of an undelivered package", "token", made.Token.ID, "err", rerr)
		}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		retire("package not delivered")
		s.internal(w, "read package", err)
		return
	}
	// A package carries a credential: none leaves unlogged.
	detail := fmt.Sprintf("school %s, group %s, %s %s, token %s, collector %s, %d bytes", store.SchoolOf(school), req.Group, req.Format, req.Arch, made.Token.ID, req.CollectorAddress, size)
	logFn := s.st.LogAccess
	if s.logAccessFn != nil {
		logFn = s.logAccessFn
	}
	if err := logFn(store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: "download-package", Detail: detail}); err != nil {
		retire("access log entry not written")
		s.internal(w, "write access log", err)
		return
	}
	s.log.Info("console: agent package downloaded", "by", v.Username, "group", req.Group, "format", req.Format, "arch", req.Arch, "token", made.Token.ID)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+safeFileName(made.FileName)+`"`)
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("X-Vigil-Token-Id", made.Token.ID)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		s.log.Warn("console: package download interrupted; its token stays valid (revoke it on the Deploy page if the file is lost)", "token", made.Token.ID, "err", err)
	}
}

// safeFileName keeps a name to characters that need no quoting in a
// Content-Disposition header and mean nothing to a shell or file system.
func safeFileName(n string) string {
	b := []byte(n)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '+' || c == '~') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "vigil-agent-package"
	}
	return string(b)
}
