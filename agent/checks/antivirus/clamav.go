package antivirus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClamAV: what clamd says over its socket and what the database headers
// say on disk. Platform-independent; used by the Linux probe.

// cvdHeader is the 512-byte header of a ClamAV database container
// (.cvd/.cld/.cud):
//
//	ClamAV-VDB:DATE:VERSION:SIGS:FLEVEL:MD5:DSIG:BUILDER:STIME
//
// space-padded to 512 bytes. DATE is "23 Nov 2026 15-21 +0000"; STIME,
// when present, is the build time in Unix seconds and is preferred.
type cvdHeader struct {
	Version int
	Sigs    int
	Level   int
	Builder string
	Built   time.Time
}

const cvdHeaderSize = 512

func parseCVDHeader(b []byte) (cvdHeader, error) {
	if len(b) > cvdHeaderSize {
		b = b[:cvdHeaderSize]
	}
	s := strings.TrimRight(string(bytes.TrimRight(b, "\x00")), " \n\r\t")
	if !strings.HasPrefix(s, "ClamAV-VDB:") {
		return cvdHeader{}, errors.New("not a ClamAV database (no ClamAV-VDB header)")
	}
	f := strings.Split(s, ":")
	if len(f) < 8 {
		return cvdHeader{}, fmt.Errorf("ClamAV database header has %d fields, want at least 8", len(f))
	}
	var h cvdHeader
	var err error
	if h.Version, err = strconv.Atoi(f[2]); err != nil || h.Version < 0 {
		return cvdHeader{}, fmt.Errorf("ClamAV database header: bad version %q", f[2])
	}
	h.Sigs, _ = strconv.Atoi(f[3])
	h.Level, _ = strconv.Atoi(f[4])
	h.Builder = f[7]
	if len(f) > 8 {
		if sec, err := strconv.ParseInt(strings.TrimSpace(f[8]), 10, 64); err == nil && sec > 0 {
			h.Built = time.Unix(sec, 0).UTC()
		}
	}
	if h.Built.IsZero() {
		t, err := time.Parse("02 Jan 2006 15-04 -0700", f[1])
		if err != nil {
			return cvdHeader{}, fmt.Errorf("ClamAV database header: bad date %q", f[1])
		}
		h.Built = t.UTC()
	}
	return h, nil
}

// clamDB is the newest daily database found in a directory.
type clamDB struct {
	Path string
	cvdHeader
}

// readClamDB reads the headers of daily.cld, daily.cvd and daily.cud in
// dir (freshclam keeps one of them; sigtool-built unsigned ones are .cud)
// and returns the highest version. The daily database is the one updated
// several times a day, so its build time is the signature age.
func readClamDB(dir string) (clamDB, error) {
	var best clamDB
	var errs []error
	found := false
	for _, name := range []string{"daily.cld", "daily.cvd", "daily.cud"} {
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		buf := make([]byte, cvdHeaderSize)
		n, err := io.ReadFull(f, buf)
		f.Close()
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		h, err := parseCVDHeader(buf[:n])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if !found || h.Version > best.Version {
			best, found = clamDB{Path: p, cvdHeader: h}, true
		}
	}
	if !found {
		if len(errs) > 0 {
			return clamDB{}, errors.Join(errs...)
		}
		return clamDB{}, fmt.Errorf("no daily.cld, daily.cvd or daily.cud in %s: %w", dir, os.ErrNotExist)
	}
	return best, nil
}

// clamdVersion is clamd's answer to VERSION:
// "ClamAV 1.4.6/27999/Mon Nov 23 15:21:28 2026" (engine, daily database
// version and its build time in clamd's local time), or just
// "ClamAV 1.4.6" when no daily database is loaded.
type clamdVersion struct {
	Engine    string
	DBVersion int
	DBTime    time.Time
}

func parseClamdVersion(s string, loc *time.Location) (clamdVersion, error) {
	s = strings.TrimRight(s, "\x00\n\r ")
	rest, ok := strings.CutPrefix(s, "ClamAV ")
	if !ok {
		return clamdVersion{}, fmt.Errorf("unexpected clamd VERSION reply %q", s)
	}
	parts := strings.SplitN(rest, "/", 3)
	v := clamdVersion{Engine: parts[0]}
	if len(parts) >= 2 {
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			return clamdVersion{}, fmt.Errorf("unexpected clamd VERSION reply %q", s)
		}
		v.DBVersion = n
	}
	if len(parts) == 3 {
		// ctime(3) format; pads the day with a space ("Nov  3").
		t, err := time.ParseInLocation(time.ANSIC, strings.Join(strings.Fields(parts[2]), " "), loc)
		if err != nil {
			t, err = time.ParseInLocation("Mon Jan 2 15:04:05 2006", strings.Join(strings.Fields(parts[2]), " "), loc)
		}
		if err == nil {
			v.DBTime = t
		}
	}
	return v, nil
}

// queryClamd sends zVERSION to clamd at socket (a Unix socket path or
// tcp://host:port) and parses the answer. Bounded by ctx and 5 seconds.
func queryClamd(ctx context.Context, socket string) (clamdVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	network, addr := "unix", socket
	if hp, ok := strings.CutPrefix(socket, "tcp://"); ok {
		network, addr = "tcp", hp
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return clamdVersion{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write([]byte("zVERSION\x00")); err != nil {
		return clamdVersion{}, err
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 1024))
	if err != nil && len(reply) == 0 {
		return clamdVersion{}, err
	}
	if i := bytes.IndexByte(reply, 0); i >= 0 {
		reply = reply[:i]
	}
	return parseClamdVersion(string(reply), time.Local)
}

// clamavProduct combines clamd's answer (cv, or its error) and the
// database on disk (db, or its error) into one Product, or ok=false when
// neither shows ClamAV is installed.
//
// "Running" is clamd answering: Linux ClamAV has no Security-Center-like
// real-time switch; on-access scanning (clamonacc) is optional and is
// reported separately when its process is seen.
func clamavProduct(socket string, cv clamdVersion, cvErr error, db clamDB, dbErr error, clamonacc bool) (Product, bool) {
	if cvErr != nil && dbErr != nil {
		return Product{}, false
	}
	p := Product{Name: "ClamAV", Source: "clamd", Extra: map[string]any{"clamd_socket": socket}}
	if clamonacc {
		p.Extra["on_access_scanner"] = "clamonacc running"
	}
	if cvErr == nil {
		p.Running = true
		p.State = "clamd answering"
		p.Version = cv.Engine
		if cv.DBVersion > 0 {
			p.SignatureVersion = strconv.Itoa(cv.DBVersion)
			p.SignatureDate = cv.DBTime
		}
	} else {
		p.Source = "clamav-db"
		p.State = fmt.Sprintf("clamd not answering on %s: %s", socket, shortErr(cvErr))
	}
	if dbErr == nil {
		p.Extra["database"] = db.Path
		p.Extra["database_version"] = float64(db.Version)
		p.Extra["database_built"] = db.Built.Format(time.RFC3339)
		// The header's Unix build time is exact; clamd's date is local
		// time to the second. Use the file when it is the version clamd
		// has loaded, or when clamd is not answering.
		if cvErr != nil || cv.DBVersion == 0 || cv.DBVersion == db.Version {
			p.SignatureVersion = strconv.Itoa(db.Version)
			p.SignatureDate = db.Built
		} else if db.Version > cv.DBVersion {
			p.Extra["note"] = fmt.Sprintf("clamd has database %d loaded; %d on disk is newer (clamd reloads on its SelfCheck interval)", cv.DBVersion, db.Version)
		}
	} else {
		p.Extra["database_error"] = dbErr.Error()
	}
	return p, true
}

// shortErr drops the "dial unix /path:" prefix net errors carry.
func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}
