package bluetooth

import (
	"path"
	"sort"

	"github.com/godbus/dbus/v5"
)

// BlueZ D-Bus names.
const (
	bluezName       = "org.bluez"
	adapterIface    = "org.bluez.Adapter1"
	objectManager   = "org.freedesktop.DBus.ObjectManager"
	propertiesIface = "org.freedesktop.DBus.Properties"
)

// managedObjects is the reply of ObjectManager.GetManagedObjects.
type managedObjects = map[dbus.ObjectPath]map[string]map[string]dbus.Variant

// adaptersFromObjects picks the org.bluez.Adapter1 objects out of a
// GetManagedObjects reply.
func adaptersFromObjects(objs managedObjects) []Adapter {
	var out []Adapter
	for p, ifaces := range objs {
		props, ok := ifaces[adapterIface]
		if !ok {
			continue
		}
		a := Adapter{ID: path.Base(string(p)), Source: "bluez"}
		if v, ok := props["Powered"].Value().(bool); ok {
			a.Powered = v
		}
		if v, ok := props["Discoverable"].Value().(bool); ok {
			a.Discoverable = boolp(v)
		}
		if v, ok := props["Address"].Value().(string); ok {
			a.Address = v
		}
		if v, ok := props["Alias"].Value().(string); ok {
			a.Name = v
		} else if v, ok := props["Name"].Value().(string); ok {
			a.Name = v
		}
		a.Extra = map[string]any{"object_path": string(p)}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// relevantSignal reports whether a BlueZ signal can change an adapter's
// posture: adapter property changes, adapters added or removed, and
// bluetoothd starting or stopping.
func relevantSignal(s *dbus.Signal) bool {
	switch s.Name {
	case propertiesIface + ".PropertiesChanged":
		if len(s.Body) > 0 {
			iface, _ := s.Body[0].(string)
			return iface == adapterIface
		}
	case objectManager + ".InterfacesAdded":
		if len(s.Body) > 1 {
			m, _ := s.Body[1].(map[string]map[string]dbus.Variant)
			_, ok := m[adapterIface]
			return ok
		}
	case objectManager + ".InterfacesRemoved":
		if len(s.Body) > 1 {
			l, _ := s.Body[1].([]string)
			for _, i := range l {
				if i == adapterIface {
					return true
				}
			}
		}
	case "org.freedesktop.DBus.NameOwnerChanged":
		if len(s.Body) > 0 {
			name, _ := s.Body[0].(string)
			return name == bluezName
		}
	}
	return false
}
