package antivirus

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ClamAV parsing on recorded headers and replies; clamd_linux_test.go
// runs the real clamd.

func TestParseCVDHeader(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "clamav", "daily.cld.header"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseCVDHeader(b)
	if err != nil || h.Version != 27999 || h.Sigs != 2076941 || h.Level != 90 || h.Builder != "raynman" ||
		!h.Built.Equal(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v %v", h, err)
	}
	// Without STIME (older databases): the DATE field.
	b, _ = os.ReadFile(filepath.Join("testdata", "clamav", "daily.cvd.header"))
	if h, err := parseCVDHeader(b); err != nil || h.Version != 27985 || !h.Built.Equal(time.Date(2026, 11, 9, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v %v", h, err)
	}
	// STIME wins over DATE.
	if h, err := parseCVDHeader([]byte("ClamAV-VDB:01 Jan 2020 00-00 +0000:5:1:1:x:X:me:1795420800")); err != nil || h.Built.Year() != 2026 {
		t.Errorf("%+v %v", h, err)
	}
	for _, bad := range []string{"", "PK\x03\x04", "ClamAV-VDB:x:y", "ClamAV-VDB:date:notanumber:1:1:x:X:me:1", "ClamAV-VDB:bad date:5:1:1:x:X:me"} {
		if _, err := parseCVDHeader([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadClamDB(t *testing.T) {
	dir := t.TempDir()
	if _, err := readClamDB(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("empty dir: %v", err)
	}
	for src, dst := range map[string]string{"daily.cld.header": "daily.cld", "daily.cvd.header": "daily.cvd"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "clamav", src))
		os.WriteFile(filepath.Join(dir, dst), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "daily.cud"), []byte("garbage"), 0o644)
	db, err := readClamDB(dir)
	if err != nil || db.Version != 27999 || db.Path != filepath.Join(dir, "daily.cld") {
		t.Errorf("%+v %v", db, err)
	}
}

func TestParseClamdVersion(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	v, err := parseClamdVersion("ClamAV 1.4.6/27999/Mon Nov 23 15:21:28 2026\x00", loc)
	if err != nil || v.Engine != "1.4.6" || v.DBVersion != 27999 || !v.DBTime.Equal(time.Date(2026, 11, 23, 14, 21, 28, 0, time.UTC)) {
		t.Errorf("%+v %v", v, err)
	}
	v, err = parseClamdVersion("ClamAV 1.4.6/27999/Tue Nov  3 09:00:00 2026\n", time.UTC)
	if err != nil || v.DBTime.Day() != 3 {
		t.Errorf("%+v %v", v, err)
	}
	v, err = parseClamdVersion("ClamAV 1.0.7", time.UTC)
	if err != nil || v.Engine != "1.0.7" || v.DBVersion != 0 {
		t.Errorf("%+v %v", v, err)
	}
	for _, bad := range []string{"", "UNKNOWN COMMAND", "ClamAV 1.4.6/x/y"} {
		if _, err := parseClamdVersion(bad, time.UTC); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A clamd-speaking server that never answers: the query gives up within
// its bound instead of hanging the poll.
func TestQueryClamdBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = queryClamd(ctx, "tcp://"+ln.Addr().String())
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
	if _, err := queryClamd(context.Background(), filepath.Join(t.TempDir(), "none.sock")); err == nil || !strings.Contains(shortErr(err), "no such file") {
		t.Errorf("missing socket: %v", err)
	}
}

func TestClamavProduct(t *testing.T) {
	db := clamDB{Path: "/var/lib/clamav/daily.cld", cvdHeader: cvdHeader{Version: 28001, Built: testNow.Add(-2 * time.Hour)}}
	cv := clamdVersion{Engine: "1.4.6", DBVersion: 28000, DBTime: testNow.Add(-20 * time.Hour)}
	// clamd has an older database loaded than the one on disk: what is in
	// memory counts.
	p, ok := clamavProduct("/s", cv, nil, db, nil, true)
	if !ok || p.SignatureVersion != "28000" || !p.SignatureDate.Equal(cv.DBTime) || p.Extra["note"] == nil || p.Extra["on_access_scanner"] != "clamonacc running" {
		t.Errorf("%+v", p)
	}
	if _, ok := clamavProduct("/s", clamdVersion{}, errors.New("refused"), clamDB{}, os.ErrNotExist, false); ok {
		t.Error("ClamAV reported with neither clamd nor a database")
	}
	// clamd answering without a readable database dir.
	p, ok = clamavProduct("/s", cv, nil, clamDB{}, errors.New("permission denied"), false)
	if !ok || !p.Running || p.SignatureVersion != "28000" || p.Extra["database_error"] != "permission denied" {
		t.Errorf("%+v", p)
	}
}
