package console

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/release"
)

// ReleaseService is the collector's agent releases (releases.Manager), the
// same one the CLI reaches through the admin socket.
type ReleaseService interface {
	List() ([]releases.Manifest, error)
	Rollouts() map[string]releases.Rollout
	Minimum() string
	StartRollout(group, version string, percent int) (releases.Rollout, error)
	Rollback(group string) (*releases.Rollout, error)
	SetMinimum(version string) error
	Status(group string, devices []releases.DeviceInfo) releases.GroupStatus
	Publish(src io.Reader, version, goos, goarch string) (releases.Manifest, error)
	// HoldsSigningKey says whether Publish can sign here (false: the key is
	// kept offline).
	HoldsSigningKey() bool
}

// ReleasesConfig turns on the Releases panel of the Deploy page.
type ReleasesConfig struct {
	Service ReleaseService
	// Changed, if set, is called with a group whose rollout changed, so its
	// connected agents are offered the new target now rather than at their
	// next reconnect (the gRPC server's PushUpgrades).
	Changed func(group string)
}

func (s *Server) releaseRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/releases", s.api(deployers, s.listReleases))
	mux.Handle("POST /api/v1/releases", s.api(deployers, s.publishRelease))
	mux.Handle("GET /api/v1/releases/status", s.api(deployers, s.releaseStatus))
	mux.Handle("POST /api/v1/releases/rollout", s.api(deployers, s.releaseRollout))
	mux.Handle("POST /api/v1/releases/rollback", s.api(deployers, s.releaseRollback))
	mux.Handle("POST /api/v1/releases/minimum", s.api(deployers, s.releaseMinimum))
}

func (s *Server) releaseService(w http.ResponseWriter) ReleaseService {
	if s.releases == nil || s.releases.Service == nil {
		jsonError(w, http.StatusServiceUnavailable, "agent releases are not configured on this collector")
		return nil
	}
	return s.releases.Service
}

// releaseChanged records a release change in the access log (who, what)
// and offers it to the group's agents. The change is made already (the
// releases service has saved it); a failed log entry is answered as an
// error so the technician knows it is not on record, and reported.
func (s *Server) releaseChanged(w http.ResponseWriter, v *viewer, action, group, detail string) bool {
	if group != "" && s.releases.Changed != nil {
		s.releases.Changed(group)
	}
	e := store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: action, Detail: detail}
	logFn := s.st.LogAccess
	if s.logAccessFn != nil {
		logFn = s.logAccessFn
	}
	if err := logFn(e); err != nil {
		s.log.Error("console: release change made but its access log entry was not written", "action", action, "detail", detail, "who", v.Username, "err", err)
		jsonError(w, http.StatusInternalServerError, "the change was made but could not be recorded in the access log; tell the administrator")
		return false
	}
	return true
}

type releasesJSON struct {
	Releases []releases.Manifest         `json:"releases"`
	Rollouts map[string]releases.Rollout `json:"rollouts"`
	Minimum  string                      `json:"minimum"`
	// Publish says whether this collector holds the signing key, so the
	// console may publish binaries (false: `release add --key` offline).
	Publish bool `json:"publish"`
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	list, err := svc.List()
	if err != nil {
		s.internal(w, "list releases", err)
		return
	}
	if list == nil {
		list = []releases.Manifest{}
	}
	writeJSON(w, http.StatusOK, releasesJSON{Releases: list, Rollouts: svc.Rollouts(), Minimum: svc.Minimum(), Publish: svc.HoldsSigningKey()})
}

// releaseStatus answers which devices of each group (or of ?group=) run
// which version. Only devices the caller may see are counted.
func (s *Server) releaseStatus(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	want := r.URL.Query().Get("group")
	pol := s.tenancyPolicy()
	var devs []releases.DeviceInfo
	groups := map[string]bool{}
	for _, d := range s.st.Devices() {
		if d.Revoked || !pol.SeesDevice(&v.User, d.DeviceID) {
			continue
		}
		connected := s.conn != nil && s.conn(d.DeviceID)
		devs = append(devs, releases.DeviceInfo{ID: d.DeviceID, Group: d.Group, Hostname: d.Hostname, Version: d.AgentVersion, Connected: connected})
		groups[d.Group] = true
	}
	// A group with a rollout and no devices yet (the pilot group being
	// filled) is shown too.
	for g := range svc.Rollouts() {
		groups[g] = true
	}
	out := []releases.GroupStatus{}
	names := make([]string, 0, len(groups))
	for g := range groups {
		if want == "" || g == want {
			names = append(names, g)
		}
	}
	if want != "" && len(names) == 0 {
		names = append(names, want)
	}
	sort.Strings(names)
	for _, g := range names {
		gs := svc.Status(g, devs)
		if gs.Devices == nil {
			gs.Devices = []releases.DeviceStatus{}
		}
		out = append(out, gs)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) releaseRollout(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	var req struct {
		Version string `json:"version"`
		Group   string `json:"group"`
		Percent int    `json:"percent"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.Group, req.Version = strings.TrimSpace(req.Group), strings.TrimSpace(req.Version)
	if req.Percent == 0 {
		req.Percent = 100
	}
	ro, err := svc.StartRollout(req.Group, req.Version, req.Percent)
	if errors.Is(err, releases.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		// Everything else StartRollout refuses is the request: no group, a
		// bad percent, a version below the minimum.
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if !s.releaseChanged(w, v, "release-rollout", req.Group, fmt.Sprintf("group %s to %s (%d%%)", req.Group, ro.Version, ro.Percent)) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": req.Group, "rollout": ro})
}

func (s *Server) releaseRollback(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	var req struct {
		Group string `json:"group"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.Group = strings.TrimSpace(req.Group)
	ro, err := svc.Rollback(req.Group)
	if errors.Is(err, releases.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		// A rollback below the minimum is refused; saving can fail too, but
		// the service's message says which.
		jsonError(w, http.StatusConflict, "%v", err)
		return
	}
	to := "no rollout (devices keep what they run)"
	if ro != nil {
		to = ro.Version
	}
	if !s.releaseChanged(w, v, "release-rollback", req.Group, "group "+req.Group+" back to "+to) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": req.Group, "rollout": ro})
}

func (s *Server) releaseMinimum(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	var req struct {
		Version string `json:"version"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.Version = strings.TrimSpace(req.Version)
	if err := svc.SetMinimum(req.Version); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	detail := "minimum " + req.Version
	if req.Version == "" {
		detail = "minimum cleared"
	}
	// Rollouts below the minimum stop being offered: every group's agents
	// hear of it.
	for g := range svc.Rollouts() {
		if s.releases.Changed != nil {
			s.releases.Changed(g)
		}
	}
	if !s.releaseChanged(w, v, "release-minimum", "", detail) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"minimum": req.Version})
}

// publishRelease signs and stores the agent binary in the request body
// (version, os and arch in the query), as `vigil-collector release add`
// does with the key the collector holds.
func (s *Server) publishRelease(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.releaseService(w)
	if svc == nil {
		return
	}
	q := r.URL.Query()
	ver, goos, goarch := q.Get("version"), q.Get("os"), q.Get("arch")
	if goarch == "" {
		goarch = "amd64"
	}
	if r.ContentLength > release.MaxBinary {
		jsonError(w, http.StatusRequestEntityTooLarge, "release binary is larger than %d MiB", release.MaxBinary>>20)
		return
	}
	// A binary over a school link takes longer than the general timeouts.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(15 * time.Minute))
	rc.SetWriteDeadline(time.Now().Add(15 * time.Minute))
	// One byte over the bound reaches the service, which refuses it.
	body := http.MaxBytesReader(w, r.Body, release.MaxBinary+1)
	man, err := svc.Publish(body, ver, goos, goarch)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		jsonError(w, http.StatusRequestEntityTooLarge, "release binary is larger than %d MiB", release.MaxBinary>>20)
		return
	case errors.Is(err, releases.ErrKeyOffline):
		jsonError(w, http.StatusConflict, "%v: add releases with `vigil-collector release add --key FILE` where the key is kept (docs/security.md)", err)
		return
	case errors.Is(err, releases.ErrExists):
		jsonError(w, http.StatusConflict, "%v", err)
		return
	case errors.Is(err, releases.ErrBadRelease):
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	case err != nil:
		s.internal(w, "publish release", err)
		return
	}
	if !s.releaseChanged(w, v, "release-publish", "", fmt.Sprintf("%s %s/%s sha256 %s, %s bytes", man.Version, man.OS, man.Arch, man.SHA256, strconv.FormatInt(man.Size, 10))) {
		return
	}
	writeJSON(w, http.StatusCreated, man)
}
