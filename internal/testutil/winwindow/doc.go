// Package winwindow opens a real top-level Win32 window with a known title
// and a solid background, for tests of the Windows screen source (under
// Wine or on Windows). Serve runs one as a child process driven over its
// stdin, because the screen source ignores its own process's windows
// (WINEVENT_SKIPOWNPROCESS). cmd/winwindow is the same as a program.
package winwindow
