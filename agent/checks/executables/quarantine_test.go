package executables

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

func TestQuarantinePutListRestore(t *testing.T) {
	qdir := filepath.Join(t.TempDir(), "q")
	store := NewStore(qdir)
	if ents, err := store.List(); err != nil || len(ents) != 0 {
		t.Fatalf("empty store: %v %v", ents, err)
	}
	src := filepath.Join(t.TempDir(), "dropper.sh")
	data := []byte("#!/bin/sh\necho pwned\n")
	writeFile(t, src, data, 0o751)
	mtime := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	os.Chtimes(src, mtime, mtime)

	id, err := store.Put(src, Meta{SHA256: sha(data), Type: TypeScript, RuleID: "r1", Reason: "unapproved"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Fatalf("source still there: %v", err)
	}
	st, err := os.Stat(qdir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("quarantine dir mode %v %v", st.Mode(), err)
	}
	bin := filepath.Join(qdir, id+".bin")
	if st, err := os.Stat(bin); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("quarantined file mode %v %v (must not be executable)", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(qdir, id+".json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("metadata %v", err)
	}
	ents, err := store.List()
	if err != nil || len(ents) != 1 {
		t.Fatalf("list %v %v", ents, err)
	}
	e := ents[0]
	if e.ID != id || e.OriginalPath != src || e.SHA256 != sha(data) || e.Size != int64(len(data)) || e.Mode.Perm() != 0o751 ||
		e.UID != os.Getuid() || e.RuleID != "r1" || !e.ModTime.Equal(mtime) || e.QuarantinedAt.IsZero() {
		t.Errorf("entry %+v", e)
	}

	// Restore refuses to overwrite.
	writeFile(t, src, []byte("new file"), 0o644)
	if _, err := store.Restore(id); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over existing file: %v", err)
	}
	if b, _ := os.ReadFile(src); string(b) != "new file" {
		t.Fatal("existing file was overwritten")
	}
	os.Remove(src)
	if _, err := store.Restore("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bad id: %v", err)
	}
	got, err := store.Restore(id)
	if err != nil || got != src {
		t.Fatalf("restore: %v %v", got, err)
	}
	b, _ := os.ReadFile(src)
	st, _ = os.Stat(src)
	if sha(b) != sha(data) || st.Mode().Perm() != 0o751 || !st.ModTime().Equal(mtime) {
		t.Errorf("restored %q mode %v mtime %v", b, st.Mode(), st.ModTime())
	}
	if ents, _ := store.List(); len(ents) != 0 {
		t.Errorf("entry kept after restore: %v", ents)
	}
	if _, err := store.Restore(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second restore: %v", err)
	}
}

// Across filesystems the move is a copy, fsync and removal (the store in
// /dev/shm, tmpfs, and the file under the test temp dir).
func TestQuarantineCrossFilesystem(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "vigil-q")
	if err != nil {
		t.Skip("no /dev/shm")
	}
	defer os.RemoveAll(shm)
	src := filepath.Join(t.TempDir(), "x.exe")
	data := minimalPE()
	writeFile(t, src, data, 0o755)
	if err := os.Link(src, filepath.Join(shm, "probe")); err == nil {
		t.Skip("same filesystem")
	}
	store := NewStore(filepath.Join(shm, "q"))
	id, err := store.Put(src, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Fatal("source kept")
	}
	if _, err := store.Restore(id); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(src); sha(b) != sha(data) {
		t.Error("content")
	}
	if st, _ := os.Stat(src); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
}

// An .app bundle (a folder) is quarantined whole and restored with its
// inner modes.
func TestQuarantineBundle(t *testing.T) {
	app := filepath.Join(t.TempDir(), "Lantern.app")
	exe := filepath.Join(app, "Contents", "MacOS", "lantern")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	writeFile(t, exe, []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"), 0o755)
	store := NewStore(filepath.Join(t.TempDir(), "q"))
	id, err := store.Put(app, Meta{Type: TypeApp})
	if err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(store.Dir(), id+".bin", "Contents", "MacOS", "lantern")
	if st, err := os.Stat(inner); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("inner %v %v", st, err)
	}
	if _, err := store.Restore(id); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(exe); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("restored inner %v %v", st, err)
	}
}
