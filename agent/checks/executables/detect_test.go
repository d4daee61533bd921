package executables

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDetect(t *testing.T) {
	zipHead := []byte("PK\x03\x04\x14\x00\x00\x00")
	ole := []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00")
	farPE := minimalPE()
	binary.LittleEndian.PutUint32(farPE[0x3c:], 8000) // header beyond the 4 KiB head
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"true", readELF(t), TypeELF},
		{"setup.exe", minimalPE(), TypePE},
		{"setup.exe", []byte("MZ but no PE header anywhere, just text"), ""},
		{"far.exe", farPE, ""},
		{"fake.exe", []byte("hello, I am text\n"), ""},
		{"a", []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"), TypeMachO},
		{"a", []byte("\xce\xfa\xed\xfe\x07\x00\x00\x00"), TypeMachO},
		{"a", []byte("\xfe\xed\xfa\xcf\x01\x00\x00\x07"), TypeMachO},
		{"a", []byte("\xca\xfe\xba\xbe\x00\x00\x00\x02"), TypeMachO}, // fat, 2 archs
		{"A.class", []byte("\xca\xfe\xba\xbe\x00\x00\x00\x41"), ""},  // Java class, version 65
		{"x", []byte("#!/usr/bin/env python3\n"), TypeScript},
		{"x.bat", []byte("@echo off\n"), TypeScript},
		{"x.PS1", []byte("Write-Host hi\n"), TypeScript},
		{"x.vbs", []byte("MsgBox 1\n"), TypeScript},
		{"x.txt", []byte("@echo off\n"), ""},
		{"x.msi", ole, TypeMSI},
		{"x.doc", ole, ""},
		{"x.jar", zipHead, TypeJAR},
		{"x.apk", zipHead, TypeAPK},
		{"x.zip", zipHead, ""},
		{"x.jar", []byte("not a zip"), ""},
		{"x.dmg", []byte("anything"), TypeDMG},
		{"x.pkg", []byte("xar!\x00\x1c"), TypePKG},
		{"x.deb", []byte("!<arch>\ndebian-binary   "), TypeDEB},
		{"x.rpm", []byte("\xed\xab\xee\xdb\x03\x00"), TypeRPM},
		{"empty", nil, ""},
	} {
		if got := Detect(tc.head, tc.name); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.name, tc.head[:min(len(tc.head), 12)], got, tc.want)
		}
	}
}

// A disk image is recognised by its koly trailer whatever its name, and
// large files report "too large to hash".
func TestInspectDMGAndHashLimit(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 4096)
	copy(img[len(img)-512:], "koly")
	p := filepath.Join(dir, "Installer")
	writeFile(t, p, img, 0o644)
	fi, err := inspect(p, 1<<20)
	if err != nil || fi.Type != TypeDMG || fi.SHA256 != sha(img) {
		t.Fatalf("koly: %+v %v", fi, err)
	}
	big := append(readELF(t), make([]byte, 10000)...)
	p = filepath.Join(dir, "big")
	writeFile(t, p, big, 0o755)
	fi, err = inspect(p, 1000)
	if err != nil || !fi.TooLarge || fi.SHA256 != "" || fi.Size != int64(len(big)) {
		t.Fatalf("too large: %+v %v", fi, err)
	}
	r := testRule(t, "processes: false\nsoftware: false\nmax_hash_bytes: 1000\n")
	c, _ := testCheck.compile(r)
	s := newSink()
	if err := reportFile(t.Context(), c, fi, "scan", s.emit, &fileState{}); err != nil {
		t.Fatal(err)
	}
	o := s.all()[0]
	if o.Details["too_large_to_hash"] != true || !bytes.Contains([]byte(o.Message), []byte("too large to hash")) {
		t.Errorf("%+v", o)
	}
	// A symlink or a fifo is never opened.
	os.Symlink("/bin/true", filepath.Join(dir, "link"))
	if _, err := inspect(filepath.Join(dir, "link"), 1<<20); err != errNotExecutable {
		t.Errorf("symlink: %v", err)
	}
}

// signedPE builds a PE whose certificate table holds a PKCS#7 SignedData
// with a self-made certificate for subject CN/O (no real signature: the
// check only reads the claimed signer).
func signedPE(t *testing.T, cn, org string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{org}},
		Issuer:       pkix.Name{CommonName: "Test CA"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	type signerInfo struct {
		Version   int
		IAS       p7IssuerAndSerial
		DigestAlg pkix.AlgorithmIdentifier
		EncAlg    pkix.AlgorithmIdentifier
		Digest    []byte
	}
	type signedData struct {
		Version     int
		DigestAlgs  []pkix.AlgorithmIdentifier `asn1:"set"`
		CI          struct{ ContentType asn1.ObjectIdentifier }
		Certs       asn1.RawValue
		SignerInfos []signerInfo `asn1:"set"`
	}
	sha256OID := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}}
	sd := signedData{
		Version:    1,
		DigestAlgs: []pkix.AlgorithmIdentifier{sha256OID},
		Certs:      asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: cert.Raw},
		SignerInfos: []signerInfo{{
			Version: 1, IAS: p7IssuerAndSerial{IssuerName: asn1.RawValue{FullBytes: cert.RawIssuer}, SerialNumber: cert.SerialNumber},
			DigestAlg: sha256OID, EncAlg: sha256OID, Digest: []byte{1, 2, 3},
		}},
	}
	sd.CI.ContentType = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 4}
	sdDER, err := asn1.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := asn1.Marshal(struct {
		OID     asn1.ObjectIdentifier
		Content asn1.RawValue
	}{oidSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sdDER}})
	if err != nil {
		t.Fatal(err)
	}
	pe := minimalPE()
	win := make([]byte, 8, 8+len(ci)+8)
	binary.LittleEndian.PutUint32(win, uint32(8+len(ci)))
	binary.LittleEndian.PutUint16(win[4:], 0x200)
	binary.LittleEndian.PutUint16(win[6:], 2)
	win = append(win, ci...)
	for len(win)%8 != 0 {
		win = append(win, 0)
	}
	secDir := 0x80 + 24 + 112 + 4*8
	binary.LittleEndian.PutUint32(pe[secDir:], uint32(len(pe)))
	binary.LittleEndian.PutUint32(pe[secDir+4:], uint32(len(win)))
	return append(pe, win...)
}

func TestPEClaimedSigner(t *testing.T) {
	pe := signedPE(t, "Psiphon Inc.", "Psiphon Inc.")
	if got := peSignerNames(bytes.NewReader(pe), int64(len(pe))); len(got) != 1 || got[0] != "Psiphon Inc." {
		t.Fatalf("signer %q", got)
	}
	pe = signedPE(t, "AnyDesk Software GmbH", "philandro Software GmbH")
	if got := peSignerNames(bytes.NewReader(pe), int64(len(pe))); len(got) != 2 || got[1] != "philandro Software GmbH" {
		t.Fatalf("signer %q", got)
	}
	if got := peSignerNames(bytes.NewReader(minimalPE()), 0x200); got != nil {
		t.Errorf("unsigned: %q", got)
	}
	// Truncated and garbage tables never panic.
	for i := 0x200; i < len(pe); i += 37 {
		peSignerNames(bytes.NewReader(pe[:i]), int64(i))
		bad := append([]byte(nil), pe...)
		bad[i] ^= 0xff
		peSignerNames(bytes.NewReader(bad), int64(len(bad)))
	}

	// A deny entry by signer matches the dropped file.
	dir := t.TempDir()
	s := startRun(t, testRule(t, watchParams(dir, "deny:\n  - {signer: \"Psiphon Inc*\", category: filter_bypass, reason: Psiphon proxy}\n")))
	p := filepath.Join(dir, "innocent-name.exe")
	writeFile(t, p, signedPE(t, "Psiphon Inc.", "Psiphon Inc."), 0o644)
	o := s.waitFor(t, p, 2*time.Second)
	if m := o.Details["matched"].(map[string]any); m["category"] != "filter_bypass" || o.Details["signer_claimed"] != "Psiphon Inc." {
		t.Errorf("%+v", o)
	}
}
