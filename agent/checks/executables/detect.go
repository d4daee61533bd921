package executables

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HeadSize is how much of a file detection reads.
const HeadSize = 4096

// Executable types reported in findings.
const (
	TypePE     = "PE"
	TypeELF    = "ELF"
	TypeMachO  = "Mach-O"
	TypeScript = "script"
	TypeMSI    = "MSI"
	TypeJAR    = "JAR"
	TypeAPK    = "APK"
	TypeAppX   = "AppX"
	TypeDMG    = "DMG"
	TypePKG    = "PKG"
	TypeDEB    = "DEB"
	TypeRPM    = "RPM"
	TypeApp    = "app bundle"
)

var scriptExt = map[string]bool{
	".bat": true, ".cmd": true, ".ps1": true, ".psm1": true, ".vbs": true, ".vbe": true,
	".wsf": true, ".hta": true, ".sh": true, ".command": true,
}

// Detect classifies a file from the first bytes of its content (at most
// HeadSize are looked at) and its name. It returns "" for a file that is not
// an executable. Text formats that the OS runs without a magic number
// (batch, PowerShell, VBScript) are recognised by extension; containers
// (MSI, JAR/APK, AppX) need both their magic and their extension.
func Detect(head []byte, name string) string {
	if len(head) > HeadSize {
		head = head[:HeadSize]
	}
	ext := strings.ToLower(filepath.Ext(name))
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return TypeELF
	case bytes.HasPrefix(head, []byte("MZ")):
		if len(head) >= 0x40 {
			off := int64(binary.LittleEndian.Uint32(head[0x3c:]))
			if off >= 0x40 && off+4 <= int64(len(head)) && bytes.Equal(head[off:off+4], []byte("PE\x00\x00")) {
				return TypePE
			}
		}
	case isMachO(head):
		return TypeMachO
	case bytes.HasPrefix(head, []byte("#!")):
		return TypeScript
	case bytes.HasPrefix(head, []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")):
		if ext == ".msi" || ext == ".msp" {
			return TypeMSI
		}
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		switch ext {
		case ".jar":
			return TypeJAR
		case ".apk", ".xapk":
			return TypeAPK
		case ".appx", ".msix", ".appxbundle", ".msixbundle":
			return TypeAppX
		}
	case bytes.HasPrefix(head, []byte("xar!")):
		if ext == ".pkg" || ext == ".mpkg" {
			return TypePKG
		}
	case bytes.HasPrefix(head, []byte("!<arch>\ndebian")):
		return TypeDEB
	case bytes.HasPrefix(head, []byte("\xed\xab\xee\xdb")):
		return TypeRPM
	}
	if scriptExt[ext] {
		return TypeScript
	}
	if ext == ".dmg" {
		return TypeDMG
	}
	return ""
}

func isMachO(h []byte) bool {
	if len(h) < 8 {
		return false
	}
	be, le := binary.BigEndian.Uint32(h), binary.LittleEndian.Uint32(h)
	for _, m := range []uint32{0xfeedface, 0xfeedfacf} {
		if be == m || le == m {
			return true
		}
	}
	// Fat (universal) binaries. 0xcafebabe is also a Java class file; a fat
	// header's architecture count is small while a class file has its
	// version (major >= 45) there.
	if be == 0xcafebabe || be == 0xcafebabf {
		n := binary.BigEndian.Uint32(h[4:])
		return n > 0 && n < 30
	}
	if le == 0xcafebabe || le == 0xcafebabf {
		n := binary.LittleEndian.Uint32(h[4:])
		return n > 0 && n < 30
	}
	return false
}

// hasKolyTrailer reports whether f (of size) ends with a UDIF "koly"
// trailer, the mark of a macOS disk image whatever its name.
func hasKolyTrailer(f io.ReaderAt, size int64) bool {
	if size < 512 {
		return false
	}
	var b [4]byte
	_, err := f.ReadAt(b[:], size-512)
	return err == nil && string(b[:]) == "koly"
}

// fileInfo is what inspect learns about one candidate.
type fileInfo struct {
	Path     string // what was found (the bundle for an .app)
	Name     string // base name
	Type     string
	Size     int64
	ModTime  time.Time
	Mode     os.FileMode
	SHA256   string // "" when too large or unreadable
	TooLarge bool
	HashErr  string
	Signers  []string // claimed signer names (PE: subject CN and O; macOS: codesign authority and team), unverified
	exe      string   // the file hashed (the bundle's main executable for an .app)
}

var errNotExecutable = errors.New("not an executable")

// inspect looks at path: reads its head, and for an executable hashes it
// (up to maxHash bytes) and finds its claimed signer. It returns
// errNotExecutable for anything else (including symlinks and devices).
func inspect(path string, maxHash int64) (*fileInfo, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		exe := appBundleExecutable(path)
		if exe == "" {
			return nil, errNotExecutable
		}
		fi, err := inspectFile(exe, maxHash, TypeApp)
		if err != nil {
			return nil, err
		}
		fi.Path, fi.Name, fi.Mode, fi.ModTime = path, filepath.Base(path), st.Mode(), st.ModTime()
		return fi, nil
	}
	if !st.Mode().IsRegular() {
		return nil, errNotExecutable
	}
	return inspectFile(path, maxHash, "")
}

func inspectFile(path string, maxHash int64, forceType string) (*fileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotExecutable
	}
	var buf [HeadSize]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	typ := forceType
	if typ == "" {
		typ = Detect(buf[:n], st.Name())
	}
	if typ == "" {
		ext := strings.ToLower(filepath.Ext(st.Name()))
		if (ext == "" || ext == ".img" || ext == ".smi") && hasKolyTrailer(f, st.Size()) {
			typ = TypeDMG
		}
	}
	if typ == "" {
		return nil, errNotExecutable
	}
	fi := &fileInfo{Path: path, Name: st.Name(), Type: typ, Size: st.Size(), ModTime: st.ModTime(), Mode: st.Mode(), exe: path}
	if typ == TypePE {
		fi.Signers = peSignerNames(f, st.Size())
	}
	if st.Size() > maxHash {
		fi.TooLarge = true
	} else {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			fi.HashErr = err.Error()
		} else if sum, err := hashReader(f, maxHash); err != nil {
			fi.HashErr = err.Error()
		} else {
			fi.SHA256 = sum
		}
	}
	if len(fi.Signers) == 0 {
		fi.Signers = osSigner(path, typ)
	}
	return fi, nil
}

func hashReader(r io.Reader, limit int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, limit+1))
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("file grew beyond %d bytes while hashing", limit)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// appBundleExecutable returns the main executable of a macOS .app bundle
// directory (CFBundleExecutable from Contents/Info.plist, else the first
// regular file in Contents/MacOS), or "" if dir is not an app bundle.
func appBundleExecutable(dir string) string {
	if !strings.EqualFold(filepath.Ext(dir), ".app") {
		return ""
	}
	macos := filepath.Join(dir, "Contents", "MacOS")
	if st, err := os.Stat(macos); err != nil || !st.IsDir() {
		return ""
	}
	if data, err := readLimited(filepath.Join(dir, "Contents", "Info.plist"), 1<<20); err == nil {
		if exe := parseInfoPlist(data)["CFBundleExecutable"]; exe != "" && !strings.ContainsAny(exe, `/\`) {
			p := filepath.Join(macos, exe)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p
			}
		}
	}
	d, err := os.Open(macos)
	if err != nil {
		return ""
	}
	defer d.Close()
	ents, _ := d.ReadDir(64)
	for _, e := range ents {
		if e.Type().IsRegular() {
			return filepath.Join(macos, e.Name())
		}
	}
	return ""
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	return data, nil
}

// humanSize formats n bytes as "1.2 MB".
func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
