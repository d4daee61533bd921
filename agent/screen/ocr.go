package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"os"
	"os/exec"
	"strings"
	"time"
)

// OCRWidth: screenshots wider than this are downscaled before OCR. Reading
// costs roughly in proportion to the pixels; 1280 px keeps ordinary screen
// text (13-16 px fonts on a 1280-1920 px screen) readable.
const OCRWidth = 1280

// ErrNoOCR is wrapped by NewOCR's error when the tesseract command is not
// installed.
var ErrNoOCR = errors.New("screen: OCR unavailable (tesseract not found)")

// OCR reads the text on a screenshot with the tesseract command (tesseract
// 4 or 5 with the English language data: Debian's tesseract-ocr and
// tesseract-ocr-eng). Each read is one child process, limited to one thread
// (OMP_THREAD_LIMIT=1: OpenMP on 2 cores costs more CPU for the same
// text), at a lower priority (nice 10, where nice exists) and with a
// timeout.
type OCR struct {
	Tesseract string        // path of the tesseract command
	Nice      string        // path of nice, "" to run tesseract directly
	Lang      string        // -l (default "eng")
	Timeout   time.Duration // per read (default 10 s)
	MaxText   int           // bytes of text kept (default 256 KiB)
}

// OCRResult is the outcome of one read.
type OCRResult struct {
	Text string
	// CPU is the tesseract process's user+system time, Wall the time from
	// start to exit; Prep the time spent preparing and encoding the image.
	CPU, Wall, Prep time.Duration
}

// NewOCR finds tesseract (and nice) on PATH.
func NewOCR() (*OCR, error) {
	bin, err := exec.LookPath("tesseract")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoOCR, err)
	}
	o := &OCR{Tesseract: bin}
	if n, err := exec.LookPath("nice"); err == nil {
		o.Nice = n
	}
	return o, nil
}

// OCRImage prepares a screenshot for OCR: at most OCRWidth wide (box
// filter) and grey, which tesseract reads as fast as colour and which
// encodes to a third of the PNG.
func OCRImage(img image.Image) *image.Gray {
	img = Downscale(img, OCRWidth)
	b := img.Bounds()
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	src, ok := img.(*image.RGBA)
	if !ok {
		draw.Draw(g, g.Rect, img, b.Min, draw.Src)
		return g
	}
	for y := 0; y < b.Dy(); y++ {
		row := src.Pix[(y+b.Min.Y-src.Rect.Min.Y)*src.Stride+(b.Min.X-src.Rect.Min.X)*4:]
		out := g.Pix[y*g.Stride : y*g.Stride+b.Dx()]
		for x := range out {
			r, gr, bl := uint32(row[x*4]), uint32(row[x*4+1]), uint32(row[x*4+2])
			// ITU-R 601 luma, as color.GrayModel.
			out[x] = uint8((19595*r + 38470*gr + 7471*bl + 1<<15) >> 16)
		}
	}
	return g
}

// Read prepares img (OCRImage, PNG) and returns the text tesseract finds
// in it.
func (o *OCR) Read(ctx context.Context, img image.Image) (OCRResult, error) {
	t0 := time.Now()
	png, err := EncodePNG(OCRImage(img))
	if err != nil {
		return OCRResult{}, err
	}
	prep := time.Since(t0)
	r, err := o.ReadPNG(ctx, png)
	r.Prep = prep
	return r, err
}

// ReadPNG runs tesseract on an encoded image (fed on stdin; nothing is
// written to disk).
func (o *OCR) ReadPNG(ctx context.Context, png []byte) (OCRResult, error) {
	lang, timeout, maxText := o.Lang, o.Timeout, o.MaxText
	if lang == "" {
		lang = "eng"
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if maxText <= 0 {
		maxText = 256 << 10
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{o.Tesseract, "stdin", "stdout", "-l", lang, "--psm", "3"}
	if o.Nice != "" {
		args = append([]string{o.Nice, "-n", "10"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "OMP_THREAD_LIMIT=1")
	cmd.Stdin = bytes.NewReader(png)
	stdout := &capped{max: maxText}
	stderr := &capped{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	t0 := time.Now()
	err := cmd.Run()
	r := OCRResult{Wall: time.Since(t0)}
	if cmd.ProcessState != nil {
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		if ctx.Err() != nil {
			return r, fmt.Errorf("screen: tesseract: %w after %v", ctx.Err(), timeout)
		}
		return r, fmt.Errorf("screen: tesseract: %v: %s", err, strings.TrimSpace(lastLine(stderr.String())))
	}
	r.Text = stdout.String()
	return r, nil
}

// capped keeps the first max bytes written to it and discards the rest.
// (Not an embedded bytes.Buffer: its ReadFrom would bypass the cap.)
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string { return c.buf.String() }

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
