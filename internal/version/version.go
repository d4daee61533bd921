// Package version holds the build's version, set by the linker.
package version

// Version is overridden at build time with -ldflags -X.
var Version = "dev"

// FailBeforeDial is a test knob, empty in every real build: a binary linked
// with -X github.com/vigil-safeguarding/vigil/internal/version.FailBeforeDial=REASON
// exits with REASON before it ever dials the collector. The end-to-end
// upgrade test uses it to build a release that never connects, so that the
// watchdog's rollback is exercised with a real binary. It can only be set
// at link time, and a build carrying it is refused by nothing but itself:
// it is harmless because it only makes the agent stop.
var FailBeforeDial = ""
