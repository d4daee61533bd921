package bluetooth

import (
	"encoding/json"
	"fmt"
	"strings"
)

// parseSystemProfiler reads `system_profiler SPBluetoothDataType -json`.
// macOS 12 and later report "controller_properties" (controller_state,
// controller_discoverable, controller_address); macOS 11 and earlier
// "local_device_title" (general_power, general_discoverable,
// general_address). Values look like "attrib_on" / "attrib_Yes".
func parseSystemProfiler(data []byte) (snapshot, error) {
	var doc struct {
		SP []map[string]json.RawMessage `json:"SPBluetoothDataType"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return snapshot{}, fmt.Errorf("system_profiler output: %w", err)
	}
	s := snapshot{Source: "system_profiler"}
	for i, item := range doc.SP {
		var props map[string]any
		var power, disc, addr, name, transport string
		if raw, ok := item["controller_properties"]; ok {
			if err := json.Unmarshal(raw, &props); err != nil {
				return snapshot{}, fmt.Errorf("system_profiler controller_properties: %w", err)
			}
			power, disc, addr = str(props["controller_state"]), str(props["controller_discoverable"]), str(props["controller_address"])
			name, transport = str(props["controller_chipset"]), str(props["controller_transport"])
		} else if raw, ok := item["local_device_title"]; ok {
			if err := json.Unmarshal(raw, &props); err != nil {
				return snapshot{}, fmt.Errorf("system_profiler local_device_title: %w", err)
			}
			power, disc, addr = str(props["general_power"]), str(props["general_discoverable"]), str(props["general_address"])
			name, transport = str(props["general_name"]), str(props["general_hardware_transport"])
		} else {
			continue
		}
		powered, ok := attrib(power)
		if !ok {
			return snapshot{}, fmt.Errorf("system_profiler: unrecognised Bluetooth power state %q", power)
		}
		a := Adapter{
			ID:      "controller",
			Address: strings.ToUpper(strings.ReplaceAll(addr, "-", ":")),
			Name:    name,
			Powered: powered,
			Source:  "system_profiler",
			Extra:   map[string]any{"state": power},
		}
		if i > 0 {
			a.ID = fmt.Sprintf("controller%d", i)
		}
		if transport != "" {
			a.Extra["transport"] = transport
		}
		if d, ok := attrib(disc); ok {
			a.Discoverable = boolp(d)
		}
		s.Adapters = append(s.Adapters, a)
	}
	return s, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// attrib parses system_profiler's "attrib_on", "attrib_Yes", "attrib_off"...
func attrib(v string) (val, ok bool) {
	switch strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(v, "attrib_"), "spbluetooth_")) {
	case "on", "yes", "true":
		return true, true
	case "off", "no", "false":
		return false, true
	}
	return false, false
}
