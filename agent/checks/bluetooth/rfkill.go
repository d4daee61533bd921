package bluetooth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// readRfkill reads Bluetooth radios from an rfkill class directory
// (/sys/class/rfkill on Linux; a fixture tree in tests). A radio counts as
// powered when neither the soft nor the hard switch blocks it: rfkill
// cannot see the controller's own power state or discoverability, so this
// is the conservative reading used only when BlueZ is not reachable.
// A missing directory means no rfkill-controlled radio: no adapters.
func readRfkill(dir string) ([]Adapter, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Adapter
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "rfkill") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if readTrim(filepath.Join(p, "type")) != "bluetooth" {
			continue
		}
		soft := readTrim(filepath.Join(p, "soft")) == "1"
		hard := readTrim(filepath.Join(p, "hard")) == "1"
		if s := readTrim(filepath.Join(p, "state")); s != "" && !fileExists(filepath.Join(p, "soft")) {
			// Old kernels: state 0 = soft blocked, 1 = unblocked, 2 = hard blocked.
			soft, hard = s == "0", s == "2"
		}
		name := readTrim(filepath.Join(p, "name"))
		id := name
		if id == "" {
			id = e.Name()
		}
		out = append(out, Adapter{
			ID:      id,
			Name:    name,
			Powered: !soft && !hard,
			Source:  "rfkill",
			Extra:   map[string]any{"rfkill": e.Name(), "soft_blocked": soft, "hard_blocked": hard},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
