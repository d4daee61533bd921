package executables

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/process"

	"github.com/vigil-safeguarding/vigil/agent/checks"
)

// fileState is shared by the rules evaluating one file, so that a second
// rule does not try to quarantine what the first one moved.
type fileState struct {
	quarantineID string
}

func matchedDetails(c *config, e *entry, denied bool) map[string]any {
	if e == nil {
		return map[string]any{"list": "none"}
	}
	cat := e.Category
	if cat == "" {
		cat = c.rule.Category
	}
	m := map[string]any{"list": e.list, "entry": e.String(), "reason": e.Reason}
	if denied {
		m["category"] = cat
	}
	return m
}

func category(c *config, e *entry) string {
	if e.Category != "" {
		return e.Category
	}
	return c.rule.Category
}

// reportFile evaluates one executable found on disk against rule c and
// emits a finding (unless it is allowed), quarantining it if asked.
func reportFile(ctx context.Context, c *config, fi *fileInfo, source string, emit checks.Emit, st *fileState) error {
	if fi.Size > c.maxHash && fi.SHA256 != "" {
		cp := *fi
		cp.SHA256, cp.TooLarge = "", true
		fi = &cp
	}
	e, denied := c.evaluate(subject{names: []string{fi.Name}, path: fi.Path, sha256: fi.SHA256, signers: fi.Signers})
	if e != nil && !denied {
		return nil
	}
	if e == nil && !c.reportUnapproved {
		return nil
	}
	if !c.rule.ActiveAt(time.Now()) {
		return nil
	}
	desc := fmt.Sprintf("%s, %s", fi.Type, humanSize(fi.Size))
	if fi.TooLarge {
		desc += fmt.Sprintf(", too large to hash: %d bytes over the %d byte limit", fi.Size, c.maxHash)
	}
	details := map[string]any{
		"path": fi.Path, "sha256": fi.SHA256, "size": fi.Size, "type": fi.Type, "name": fi.Name,
		"source": source, "matched": matchedDetails(c, e, denied),
	}
	if fi.TooLarge {
		details["too_large_to_hash"] = true
	}
	if fi.HashErr != "" {
		details["hash_error"] = fi.HashErr
	}
	if len(fi.Signers) > 0 {
		details["signer_claimed"] = strings.Join(fi.Signers, "; ")
	}
	obs := checks.Observation{Details: details}
	reason := "unapproved"
	if denied {
		obs.Severity = e.severity
		reason = e.Reason
		obs.Message = fmt.Sprintf("denied executable (%s): %s (%s) — %s", category(c, e), fi.Path, desc, e.Reason)
	} else {
		obs.Message = fmt.Sprintf("unapproved executable found: %s (%s)", fi.Path, desc)
	}
	action := c.action
	if denied && e.Action != "" {
		action = e.Action
	}
	taken := "alert"
	if action == "quarantine" {
		switch store := c.quarantine; {
		case st.quarantineID != "":
			taken = "quarantined"
			details["quarantine_id"] = st.quarantineID
		case store == nil:
			taken = "alert (quarantine unavailable: the agent state folder is not set)"
		default:
			id, err := store.Put(fi.Path, Meta{SHA256: fi.SHA256, Type: fi.Type, RuleID: c.rule.ID, RuleVersion: c.rule.Version, Reason: reason})
			if err != nil {
				taken = "alert (quarantine failed: " + err.Error() + ")"
			} else {
				st.quarantineID = id
				taken = "quarantined"
				details["quarantine_id"] = id
			}
		}
		if taken == "quarantined" {
			obs.Message += " — quarantined"
		}
	}
	details["action_taken"] = taken
	obs.Key = fi.Path + ":" + fi.SHA256
	if fi.SHA256 == "" {
		obs.Key = fmt.Sprintf("%s:unhashed:%d:%d", fi.Path, fi.Size, fi.ModTime.UnixNano())
	}
	_, _, err := emit(ctx, c.rule, obs)
	return err
}

// scanFolders inspects the top level of c's watched folders (at most
// limit entries in all).
func scanFolders(ctx context.Context, c *config, emit checks.Emit, limit int) error {
	var errs []error
	for _, root := range expandRoots(c.paths) {
		if limit <= 0 {
			break
		}
		d, err := os.Open(root)
		if err != nil {
			continue
		}
		ents, _ := d.ReadDir(limit)
		d.Close()
		limit -= len(ents)
		for _, de := range ents {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !de.Type().IsRegular() && !(de.IsDir() && strings.EqualFold(filepath.Ext(de.Name()), ".app")) {
				continue
			}
			fi, err := inspect(filepath.Join(root, de.Name()), c.maxHash)
			if err != nil {
				continue
			}
			if err := reportFile(ctx, c, fi, "scan", emit, &fileState{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// expandRoots expands globs to existing directories (at most 512).
func expandRoots(globs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range globs {
		ms, _ := filepath.Glob(g)
		for _, m := range ms {
			m = filepath.Clean(m)
			if seen[m] || len(out) >= 512 {
				continue
			}
			st, err := os.Stat(m)
			if err != nil || !st.IsDir() {
				continue
			}
			if real, err := filepath.EvalSymlinks(m); err == nil && filepath.Dir(real) == real {
				continue // e.g. /Volumes/Macintosh HD -> /
			}
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// procInfo is one running process.
type procInfo struct {
	PID  int32
	Name string
	Exe  string
}

// listProcesses and killProcess are variables for tests.
var (
	listProcesses = func(ctx context.Context) ([]procInfo, error) {
		ps, err := process.ProcessesWithContext(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]procInfo, 0, len(ps))
		for _, p := range ps {
			name, _ := p.NameWithContext(ctx)
			exe, _ := p.ExeWithContext(ctx)
			out = append(out, procInfo{PID: p.Pid, Name: name, Exe: exe})
		}
		return out, ctx.Err()
	}
	killProcess = func(ctx context.Context, pid int32) error {
		p, err := process.NewProcessWithContext(ctx, pid)
		if err != nil {
			return err
		}
		return p.KillWithContext(ctx)
	}
	listSoftware = installedSoftware
)

// exeCache remembers the hash and claimed signer of running programs by
// path, size and modification time, so periodic scans do not rehash.
var exeCache = struct {
	sync.Mutex
	m map[string]exeFacts
}{m: map[string]exeFacts{}}

type exeFacts struct {
	size     int64
	mtime    time.Time
	sha256   string
	tooLarge bool
	signers  []string
}

const exeCacheMax = 4096

func exeFactsFor(path string, maxHash int64) exeFacts {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return exeFacts{}
	}
	exeCache.Lock()
	f, ok := exeCache.m[path]
	exeCache.Unlock()
	if ok && f.size == st.Size() && f.mtime.Equal(st.ModTime()) && (f.sha256 != "" || f.tooLarge && f.size > maxHash) {
		return f
	}
	f = exeFacts{size: st.Size(), mtime: st.ModTime()}
	if fh, err := os.Open(path); err == nil {
		var head [HeadSize]byte
		n, _ := fh.ReadAt(head[:], 0)
		typ := Detect(head[:n], path)
		if typ == TypePE {
			f.signers = peSignerNames(fh, st.Size())
		} else {
			f.signers = osSigner(path, typ)
		}
		if st.Size() > maxHash {
			f.tooLarge = true
		} else if sum, err := hashReader(fh, maxHash); err == nil {
			f.sha256 = sum
		}
		fh.Close()
	}
	exeCache.Lock()
	if len(exeCache.m) >= exeCacheMax {
		for k := range exeCache.m {
			delete(exeCache.m, k)
			break
		}
	}
	exeCache.m[path] = f
	exeCache.Unlock()
	return f
}

// scanProcesses reports running processes that a deny entry matches (one
// finding per program, listing its pids), killing them if c.kill.
func scanProcesses(ctx context.Context, c *config, emit checks.Emit) error {
	if len(c.deny) == 0 {
		return nil
	}
	procs, err := listProcesses(ctx)
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	type group struct {
		p    procInfo
		e    *entry
		f    exeFacts
		pids []int32
	}
	groups := map[string]*group{}
	var order []string
	self, parent := int32(os.Getpid()), int32(os.Getppid())
	for _, p := range procs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.PID == self || p.PID == parent || p.PID <= 1 {
			continue
		}
		var f exeFacts
		if p.Exe != "" {
			f = exeFactsFor(p.Exe, c.maxHash)
		}
		names := []string{p.Name}
		if p.Exe != "" {
			names = append(names, filepath.Base(p.Exe))
		}
		e, denied := c.evaluate(subject{names: names, path: p.Exe, sha256: f.sha256, signers: f.signers})
		if !denied {
			continue
		}
		key := p.Exe + ":" + f.sha256
		if p.Exe == "" {
			key = "process:" + p.Name
		}
		g := groups[key]
		if g == nil {
			g = &group{p: p, e: e, f: f}
			groups[key] = g
			order = append(order, key)
		}
		g.pids = append(g.pids, p.PID)
	}
	if len(order) == 0 || !c.rule.ActiveAt(time.Now()) {
		return nil
	}
	var obs []checks.Observation
	for _, key := range order {
		g := groups[key]
		sort.Slice(g.pids, func(i, j int) bool { return g.pids[i] < g.pids[j] })
		pids := make([]any, len(g.pids))
		for i, pid := range g.pids {
			pids[i] = int64(pid)
		}
		taken := "alert"
		if c.kill {
			var failed []string
			for _, pid := range g.pids {
				if err := killProcess(ctx, pid); err != nil {
					failed = append(failed, fmt.Sprintf("%d: %v", pid, err))
				}
			}
			taken = "killed"
			if len(failed) > 0 {
				taken = "alert (kill failed: " + strings.Join(failed, "; ") + ")"
			}
		}
		details := map[string]any{
			"path": g.p.Exe, "sha256": g.f.sha256, "size": g.f.size, "type": "process", "name": g.p.Name,
			"pid": int64(g.pids[0]), "pids": pids, "source": "process", "matched": matchedDetails(c, g.e, true),
			"action_taken": taken,
		}
		if len(g.f.signers) > 0 {
			details["signer_claimed"] = strings.Join(g.f.signers, "; ")
		}
		where := g.p.Exe
		if where == "" {
			where = "executable path unknown"
		}
		msg := fmt.Sprintf("denied program running (%s): %s (pid %d, %s) — %s", category(c, g.e), g.p.Name, g.pids[0], where, g.e.Reason)
		if taken == "killed" {
			msg += " — killed"
		}
		obs = append(obs, checks.Observation{Key: key, Message: msg, Severity: g.e.severity, Details: details})
	}
	_, _, err = emit(ctx, c.rule, obs...)
	return err
}

// scanSoftware reports installed programs that a deny entry matches by
// name or signer (signer globs match the self-declared publisher).
func scanSoftware(ctx context.Context, c *config, emit checks.Emit) error {
	if len(c.deny) == 0 {
		return nil
	}
	sw, err := listSoftware(ctx)
	if err != nil {
		return fmt.Errorf("list installed software: %w", err)
	}
	var obs []checks.Observation
	for _, s := range sw {
		var signers []string
		if s.Publisher != "" {
			signers = []string{s.Publisher}
		}
		e, denied := c.evaluate(subject{names: append([]string{s.Name}, s.AltNames...), signers: signers})
		if !denied {
			continue
		}
		name := s.Name
		if s.Version != "" {
			name += " " + s.Version
		}
		details := map[string]any{
			"name": s.Name, "version": s.Version, "publisher": s.Publisher, "source": "software:" + s.Source,
			"type": "installed software", "path": s.Location, "matched": matchedDetails(c, e, true), "action_taken": "alert",
		}
		obs = append(obs, checks.Observation{
			Key:      "software:" + s.Source + ":" + s.Name + ":" + s.Version,
			Message:  fmt.Sprintf("denied software installed (%s): %s (%s) — %s", category(c, e), name, s.Source, e.Reason),
			Severity: e.severity,
			Details:  details,
		})
	}
	if len(obs) == 0 || !c.rule.ActiveAt(time.Now()) {
		return nil
	}
	_, _, err = emit(ctx, c.rule, obs...)
	return err
}
