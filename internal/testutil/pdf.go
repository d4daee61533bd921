package testutil

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// PDFText extracts the text of a PDF with poppler's pdftotext, as a person
// copying it from a viewer would get it: the check that what was typed is
// what prints, whatever font encoding the PDF uses. Without pdftotext it
// skips on a developer's machine and fails in CI (make deps installs
// poppler-utils).
func PDFText(t testing.TB, pdf []byte) string {
	t.Helper()
	bin, err := exec.LookPath("pdftotext")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pdftotext not found (apt-get install poppler-utils), and CI is set")
		}
		t.Skip("pdftotext not found (apt-get install poppler-utils)")
	}
	in := filepath.Join(t.TempDir(), "in.pdf")
	if err := os.WriteFile(in, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-enc", "UTF-8", "-layout", in, "-")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("pdftotext: %v: %s", err, errOut.String())
	}
	return out.String()
}
