package removable

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// linuxMedia finds the removable media among mounts, reading sysfs under
// sys (/sys) and labels under dev (/dev). Roots are parameters so tests
// run on a fixture tree.
func linuxMedia(mounts []mount, sys, dev string) []Medium {
	var out []Medium
	seen := map[string]bool{}
	for _, mt := range mounts {
		if !strings.HasPrefix(mt.Source, "/dev/") || mt.Root != "/" {
			continue // not a block device, or a bind mount of a subdirectory
		}
		name := filepath.Base(mt.Source)
		if seen[name] || strings.HasPrefix(mt.Source, "/dev/mapper/") {
			continue
		}
		m, ok := blockMedium(name, sys, dev)
		if !ok {
			continue
		}
		seen[name] = true
		m.FSType, m.MountPoint = mt.FSType, mt.MountPoint
		out = append(out, m)
	}
	return out
}

// blockMedium reads what sysfs says about block device name (a disk such
// as sdb or a partition such as sdb1) and whether it is removable.
func blockMedium(name, sys, dev string) (Medium, bool) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return Medium{}, false
	}
	blockDir := filepath.Join(sys, "block")
	disk, partDir := "", ""
	if fileExists(filepath.Join(blockDir, name)) {
		disk, partDir = name, filepath.Join(blockDir, name)
	} else {
		entries, _ := os.ReadDir(blockDir)
		for _, e := range entries {
			p := filepath.Join(blockDir, e.Name(), name)
			if fileExists(filepath.Join(p, "partition")) {
				disk, partDir = e.Name(), p
				break
			}
		}
	}
	if disk == "" {
		return Medium{}, false
	}
	diskDir := filepath.Join(blockDir, disk)
	real, err := filepath.EvalSymlinks(diskDir)
	if err != nil {
		real = diskDir
	}
	bus := busOf(filepath.ToSlash(real))
	removable := readTrim(filepath.Join(diskDir, "removable")) == "1"
	switch bus {
	case "usb", "firewire":
		removable = true // USB SSDs and disks report removable=0 but are removable storage
	case "mmc":
		// SD cards are removable; soldered eMMC (type MMC) is not.
		removable = readTrim(filepath.Join(diskDir, "device", "type")) == "SD"
	}
	if !removable {
		return Medium{}, false
	}
	m := Medium{Device: name, Bus: bus}
	m.Vendor = readTrim(filepath.Join(diskDir, "device", "vendor"))
	m.Model = readTrim(filepath.Join(diskDir, "device", "model"))
	if m.Model == "" {
		m.Model = readTrim(filepath.Join(diskDir, "device", "name")) // mmc
	}
	if n, err := strconv.ParseUint(readTrim(filepath.Join(partDir, "size")), 10, 64); err == nil {
		m.SizeBytes = n * 512 // sysfs sizes are in 512-byte sectors
	}
	if partDir != diskDir {
		m.Part = readTrim(filepath.Join(partDir, "partition"))
	}
	// Walk up to the USB device (idVendor) for vendor:product and serial.
	for d := real; len(d) > len(sys) && d != filepath.Dir(d); d = filepath.Dir(d) {
		if vid := readTrim(filepath.Join(d, "idVendor")); vid != "" {
			m.HWID = vid + ":" + readTrim(filepath.Join(d, "idProduct"))
			m.Serial = readTrim(filepath.Join(d, "serial"))
			m.AltVendor = readTrim(filepath.Join(d, "manufacturer"))
			m.AltModel = readTrim(filepath.Join(d, "product"))
			break
		}
	}
	if m.Serial == "" && bus == "mmc" {
		m.Serial = readTrim(filepath.Join(diskDir, "device", "serial"))
		m.HWID = readTrim(filepath.Join(diskDir, "device", "manfid")) + ":" + readTrim(filepath.Join(diskDir, "device", "oemid"))
		m.HWID = strings.Trim(m.HWID, ":")
	}
	if m.Vendor == "" {
		m.Vendor = m.AltVendor
	}
	if m.Model == "" {
		m.Model = m.AltModel
	}
	m.Label = linkNameTo(filepath.Join(dev, "disk", "by-label"), name)
	m.VolumeID = linkNameTo(filepath.Join(dev, "disk", "by-uuid"), name)
	return m, true
}

// busOf names the bus from a resolved sysfs device path.
func busOf(p string) string {
	switch {
	case strings.Contains(p, "/usb"):
		return "usb"
	case strings.Contains(p, "/mmc"):
		return "mmc"
	case strings.Contains(p, "/fw") || strings.Contains(p, "firewire"):
		return "firewire"
	case strings.Contains(p, "/nvme"):
		return "nvme"
	case strings.Contains(p, "/ata"):
		return "ata"
	case strings.Contains(p, "/virtio"):
		return "virtio"
	}
	return ""
}

// linkNameTo returns the (udev-unescaped) name of the symlink in dir that
// points at device name, e.g. /dev/disk/by-label/KEYS -> ../../sdb1.
func linkNameTo(dir, name string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && filepath.Base(t) == name {
			return unescapeHex(e.Name())
		}
	}
	return ""
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) > 4096 {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
