package removable

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// darwinSource lists /Volumes and asks diskutil about entries it has not
// seen, polling every interval.
type darwinSource struct {
	interval time.Duration
	cache    map[string]cached // by /Volumes entry name
}

type cached struct {
	medium Medium
	ok     bool
}

func newSource() (source, error) {
	return &darwinSource{interval: 2 * time.Second, cache: map[string]cached{}}, nil
}

func (s *darwinSource) Close() {}

func (s *darwinSource) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(s.interval):
	}
}

func (s *darwinSource) List(ctx context.Context) ([]Medium, error) {
	entries, err := os.ReadDir("/Volumes")
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	var out []Medium
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 || strings.HasPrefix(e.Name(), ".") {
			continue // the boot volume's link to /
		}
		present[e.Name()] = true
		c, ok := s.cache[e.Name()]
		if !ok {
			c = s.lookup(ctx, filepath.Join("/Volumes", e.Name()))
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.cache[e.Name()] = c
		}
		if c.ok {
			out = append(out, c.medium)
		}
	}
	for name := range s.cache {
		if !present[name] {
			delete(s.cache, name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MountPoint < out[j].MountPoint })
	return out, nil
}

func (s *darwinSource) lookup(ctx context.Context, vol string) cached {
	v, err := diskutilInfo(ctx, vol)
	if err != nil {
		return cached{} // network shares and the like have no disk
	}
	var parent diskInfo
	if v.ParentWholeDisk != "" && v.ParentWholeDisk != v.DeviceIdentifier {
		parent, _ = diskutilInfo(ctx, v.ParentWholeDisk)
	}
	m, ok := macMedium(v, parent)
	return cached{medium: m, ok: ok}
}

func diskutilInfo(ctx context.Context, target string) (diskInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/diskutil", "info", "-plist", target).Output()
	if err != nil {
		return diskInfo{}, err
	}
	return parseDiskutil(out)
}
