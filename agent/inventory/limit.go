package inventory

import (
	"errors"
	"io"
)

// limitedWriter fails once more than n bytes were written: a source whose
// output is larger than any real one is refused rather than buffered.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errors.New("output larger than the audit accepts")
	}
	l.n -= len(p)
	return l.w.Write(p)
}
