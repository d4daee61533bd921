// Package installer holds the files the agent's packages install (service
// definitions, maintainer scripts, the MSI source template, autostart
// entries) as plain files a technician can read, embedded for
// collector/packaging, which builds the packages from them.
package installer

import (
	"embed"
	"io/fs"
)

//go:embed linux windows macos
var files embed.FS

// Files returns the installer files, rooted at this directory
// (linux/vigil-agent.service, windows/vigil-agent.wxs.tmpl, ...).
func Files() fs.FS { return files }
