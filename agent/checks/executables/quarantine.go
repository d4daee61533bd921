package executables

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

// Meta describes a quarantined file; it is stored next to the file as
// ID.json.
type Meta struct {
	OriginalPath  string      `json:"original_path"`
	SHA256        string      `json:"sha256,omitempty"`
	Size          int64       `json:"size"`
	Type          string      `json:"type,omitempty"`
	Mode          fs.FileMode `json:"mode"`              // permission bits and type at quarantine time
	UID           int         `json:"uid"`               // -1 when unknown (Windows)
	GID           int         `json:"gid"`               // -1 when unknown
	Owner         string      `json:"owner,omitempty"`   // user name when resolvable
	ModTime       time.Time   `json:"mod_time"`          // of the original
	QuarantinedAt time.Time   `json:"quarantined_at"`    //
	RuleID        string      `json:"rule_id,omitempty"` // the rule that asked
	RuleVersion   int         `json:"rule_version,omitempty"`
	Reason        string      `json:"reason,omitempty"` // the matched entry's reason, or "unapproved"
	// Tree holds the modes of a quarantined directory's (an .app bundle's)
	// contents, by slash-separated relative path.
	Tree map[string]fs.FileMode `json:"tree,omitempty"`
}

// Entry is one quarantined item.
type Entry struct {
	ID string `json:"id"`
	Meta
}

// Store is a quarantine folder: each item is ID.bin (the file, mode 0600,
// or a directory for an .app bundle with every file 0600) and ID.json (its
// Meta). The folder is 0700. It is safe for concurrent use within one
// process.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Errors from Restore.
var (
	ErrExists   = errors.New("a file already exists at the original path")
	ErrNotFound = errors.New("no such quarantine entry")
)

var idRe = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{16}$`)

// NewStore returns the store in dir; the folder is created (0700) on the
// first Put.
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

func (s *Store) ensureDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(s.dir, 0o700)
}

// Put moves path into the quarantine and records meta (OriginalPath, Size,
// Mode, UID/GID, Owner, ModTime and QuarantinedAt are filled in from the
// file). The move is a rename, or, across filesystems, a copy, fsync and
// removal of the original (regular files only). Exec bits are stripped.
func (s *Store) Put(path string, meta Meta) (id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Lstat(abs)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() && !st.IsDir() {
		return "", fmt.Errorf("quarantine %s: not a regular file or bundle", abs)
	}
	if err := s.ensureDir(); err != nil {
		return "", fmt.Errorf("quarantine folder: %w", err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	now := time.Now().UTC()
	id = now.Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	meta.OriginalPath = abs
	meta.Mode = st.Mode()
	meta.ModTime = st.ModTime()
	meta.QuarantinedAt = now
	meta.UID, meta.GID = fileOwner(st)
	if meta.UID >= 0 {
		if u, err := user.LookupId(strconv.Itoa(meta.UID)); err == nil {
			meta.Owner = u.Username
		}
	}
	if st.Mode().IsRegular() {
		meta.Size = st.Size()
	}
	bin := filepath.Join(s.dir, id+".bin")
	if st.IsDir() {
		meta.Tree = map[string]fs.FileMode{}
		filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == abs || len(meta.Tree) >= 10000 {
				return nil
			}
			if info, err := d.Info(); err == nil {
				rel, _ := filepath.Rel(abs, p)
				meta.Tree[filepath.ToSlash(rel)] = info.Mode()
			}
			return nil
		})
		if err := os.Rename(abs, bin); err != nil {
			return "", fmt.Errorf("quarantine %s (bundles move only within one filesystem): %w", abs, err)
		}
		filepath.WalkDir(bin, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				os.Chmod(p, 0o700)
			} else if d.Type().IsRegular() {
				os.Chmod(p, 0o600)
			}
			return nil
		})
	} else if err := moveFile(abs, bin); err != nil {
		return "", fmt.Errorf("quarantine %s: %w", abs, err)
	} else {
		os.Chmod(bin, 0o600)
	}
	data, _ := json.MarshalIndent(Entry{ID: id, Meta: meta}, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(s.dir, id+".json"), data, 0o600); err != nil {
		// Put the file back rather than lose track of it.
		if rerr := s.moveBack(bin, meta); rerr != nil {
			return "", fmt.Errorf("quarantine metadata: %v; and the file stays at %s: %v", err, bin, rerr)
		}
		return "", fmt.Errorf("quarantine metadata: %w", err)
	}
	return id, nil
}

// moveFile renames src to dst, falling back to copy+fsync+remove when
// they are on different filesystems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil {
		return nil
	}
	if _, serr := os.Lstat(src); serr != nil {
		return err
	}
	if cerr := copyFileExcl(src, dst, 0o600); cerr != nil {
		return fmt.Errorf("rename: %v; copy: %w", err, cerr)
	}
	if rerr := os.Remove(src); rerr != nil {
		os.Remove(dst)
		return fmt.Errorf("remove original after copy: %w", rerr)
	}
	return nil
}

// copyFileExcl copies src to a new file dst (failing if dst exists),
// synced before it is given its final name.
func copyFileExcl(src, dst string, mode fs.FileMode) error {
	tmp := dst + ".part"
	err := fsutil.CopySynced(src, tmp, os.O_EXCL, mode)
	if err == nil {
		// Link refuses to replace an existing dst; fall back to a checked
		// rename where hard links are unsupported.
		if err = os.Link(tmp, dst); err == nil {
			os.Remove(tmp)
		} else if _, serr := os.Lstat(dst); serr == nil {
			err = ErrExists
		} else {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(dst))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// List returns the quarantined items, oldest first.
func (s *Store) List() ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range ents {
		id, ok := strings.CutSuffix(d.Name(), ".json")
		if !ok || !idRe.MatchString(id) {
			continue
		}
		e, err := s.read(id)
		if err != nil {
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *Store) read(id string) (Entry, error) {
	data, err := readLimited(filepath.Join(s.dir, id+".json"), 4<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, err
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, fmt.Errorf("quarantine entry %s: %w", id, err)
	}
	e.ID = id
	return e, nil
}

// Restore moves item id back to its original path with its original mode
// (and owner and modification time where possible) and forgets it. It
// refuses to overwrite anything at the original path (ErrExists).
func (s *Store) Restore(id string) (restoredPath string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !idRe.MatchString(id) {
		return "", ErrNotFound
	}
	e, err := s.read(id)
	if err != nil {
		return "", err
	}
	if e.OriginalPath == "" || !filepath.IsAbs(e.OriginalPath) {
		return "", fmt.Errorf("quarantine entry %s: bad original path %q", id, e.OriginalPath)
	}
	if err := s.moveBack(filepath.Join(s.dir, id+".bin"), e.Meta); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(s.dir, id+".json"))
	syncDir(s.dir)
	return e.OriginalPath, nil
}

func (s *Store) moveBack(bin string, m Meta) error {
	dst := m.OriginalPath
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("restore to %s: %w", dst, ErrExists)
	}
	st, err := os.Lstat(bin)
	if err != nil {
		return fmt.Errorf("quarantined data: %w", err)
	}
	if st.IsDir() {
		if err := os.Rename(bin, dst); err != nil {
			return fmt.Errorf("restore %s: %w", dst, err)
		}
		for rel, mode := range m.Tree {
			p := filepath.Join(dst, filepath.FromSlash(rel))
			if !strings.HasPrefix(p, dst+string(filepath.Separator)) {
				continue
			}
			if lst, err := os.Lstat(p); err == nil && lst.Mode()&fs.ModeSymlink == 0 {
				os.Chmod(p, mode.Perm())
			}
		}
	} else {
		// Link fails if dst appeared meanwhile: never overwrite.
		if err := os.Link(bin, dst); err == nil {
			os.Remove(bin)
		} else if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("restore to %s: %w", dst, ErrExists)
		} else if err := copyFileExcl(bin, dst, 0o600); err != nil {
			return fmt.Errorf("restore %s: %w", dst, err)
		} else {
			os.Remove(bin)
		}
	}
	if m.UID >= 0 && m.GID >= 0 {
		chownBest(dst, m.UID, m.GID) // before chmod: chown clears setuid
	}
	os.Chmod(dst, m.Mode.Perm()|m.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	if !m.ModTime.IsZero() {
		os.Chtimes(dst, time.Now(), m.ModTime)
	}
	syncDir(filepath.Dir(dst))
	return nil
}
