package screen

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
)

// Media types of fitted evidence.
const (
	MediaPNG  = "image/png"
	MediaJPEG = "image/jpeg"
)

// ErrTooLarge is wrapped by Fit's error when no encoding within its steps
// fits the budget.
var ErrTooLarge = errors.New("screenshot does not fit the evidence budget")

// minFitWidth is the narrowest Fit goes: below it a screenshot no longer
// shows what a reviewer needs to see, and a finding without one (saying
// so) is more honest than a thumbnail.
const minFitWidth = 320

// jpegQualities are tried in order at each width.
var jpegQualities = []int{80, 60, 40}

// Fit encodes img, downscaled to at most maxWidth pixels wide, in at most
// maxBytes: PNG first (lossless, small for text, which is most of what
// screens show), then JPEG at falling quality (photographs, video frames
// and gradients, where PNG runs to megabytes), then JPEG at three quarters
// of the width each step down to 320 pixels. maxBytes <= 0 means no budget.
// It returns the encoded image and its media type, or an error wrapping
// ErrTooLarge.
func Fit(img image.Image, maxWidth, maxBytes int) ([]byte, string, error) {
	scaled := Downscale(img, maxWidth)
	if maxBytes <= 0 {
		png, err := EncodePNG(scaled)
		return png, MediaPNG, err
	}
	// The PNG attempt stops as soon as it is over budget: a photograph
	// would otherwise cost a whole PNG encoding of megabytes.
	out := &budgetBuf{max: maxBytes}
	err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(out, scaled)
	switch {
	case err == nil:
		return out.buf.Bytes(), MediaPNG, nil
	case !errors.Is(err, errOverBudget):
		return nil, "", fmt.Errorf("screen: encode png: %w", err)
	}
	smallest, w := out.buf.Len()+out.refused, scaled.Bounds().Dx()
	for {
		for _, q := range jpegQualities {
			b, err := encodeJPEG(scaled, q)
			if err != nil {
				return nil, "", err
			}
			if len(b) <= maxBytes {
				return b, MediaJPEG, nil
			}
			smallest = min(smallest, len(b))
		}
		if w <= minFitWidth {
			return nil, "", fmt.Errorf("%w: %d bytes at best (JPEG, %d pixels wide), the budget is %d", ErrTooLarge, smallest, w, maxBytes)
		}
		w = max(minFitWidth, w*3/4)
		scaled = Downscale(scaled, w)
	}
}

var errOverBudget = errors.New("over budget")

// budgetBuf is a buffer that refuses writes past max.
type budgetBuf struct {
	buf     bytes.Buffer
	max     int
	refused int
}

func (c *budgetBuf) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > c.max {
		c.refused += len(p)
		return 0, errOverBudget
	}
	return c.buf.Write(p)
}

func encodeJPEG(img image.Image, quality int) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("screen: encode jpeg: %w", err)
	}
	return buf.Bytes(), nil
}

// PlainBudget is how many bytes of image fit in cipherBudget bytes of age
// ciphertext: the header (one X25519 stanza, about 200 bytes) and a 16-byte
// nonce, plus a 16-byte tag per 64 KiB chunk, with room to spare.
func PlainBudget(cipherBudget int) int {
	if cipherBudget <= 0 {
		return 0
	}
	return max(1, cipherBudget-1024-16*(cipherBudget/(64<<10)+1))
}
