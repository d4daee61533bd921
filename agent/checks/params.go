package checks

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/rules"
)

// DecodeParams decodes a rule's params mapping into v (a pointer to a struct
// with yaml tags), rejecting keys the struct does not have. Errors carry the
// offending node's line and column (the rules package fills in the file).
// A nil params node leaves v unchanged.
func DecodeParams(params *yaml.Node, v any) error {
	if params == nil {
		return nil
	}
	if params.Kind != yaml.MappingNode {
		return posErr(params, "params must be a mapping")
	}
	if err := checkKeys(params, reflect.TypeOf(v).Elem()); err != nil {
		return err
	}
	if err := params.Decode(v); err != nil {
		// An UnmarshalYAML of ours (Duration) already knows its position.
		var re *rules.Error
		if errors.As(err, &re) {
			return re
		}
		return posErr(params, "params: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// checkKeys walks mappings against struct fields, recursing into nested
// structs and slices of structs.
func checkKeys(n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				return posErr(k, "unknown param %q (known: %s)", k.Value, strings.Join(slices.Sorted(slices.Values(known)), ", "))
			}
			if err := checkKeys(val, ft); err != nil {
				return err
			}
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for _, c := range n.Content {
			if err := checkKeys(c, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

func posErr(n *yaml.Node, format string, a ...any) error {
	return &rules.Error{Pos: rules.Pos{Line: n.Line, Col: n.Column}, Msg: fmt.Sprintf(format, a...)}
}

// ParamError returns an error positioned at node n, for checks' own
// validation of decoded params.
func ParamError(n *yaml.Node, format string, a ...any) error { return posErr(n, format, a...) }

// Duration is a params duration that also accepts days ("3d"), since
// rule authors think of signature ages and dedupe windows in days.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return posErr(n, "%v", err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration or a whole number of days ("3d").
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bad duration %q (use e.g. 3d, 12h, 30m)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad duration %q (use e.g. 3d, 12h, 30m)", s)
	}
	return v, nil
}
