package contract

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Suffixes of the details keys Sanitize adds next to what it changed.
const (
	// RawSuffix: "<key>_raw" holds the original bytes of a string that was
	// not valid UTF-8, escaped (see Escape). For a list, "<key>_raw" is a
	// list of the same length with the escaped original at each changed
	// index and null elsewhere.
	RawSuffix = "_raw"
	// RawKeySuffix: "<key>_raw_key" holds the escaped original of a details
	// key that was not valid UTF-8.
	RawKeySuffix = "_raw_key"
	// TruncatedSuffix: "<field>_truncated_from" holds the original length in
	// bytes of a field cut to its limit.
	TruncatedSuffix = "_truncated_from"
)

// Details keys Sanitize sets when it had to drop something.
const (
	KeyEvidenceDropped = "evidence_dropped"
	KeyDetailsDropped  = "details_dropped"
	KeyDetailsCut      = "details_truncated"
)

// maxRaw bounds one escaped original kept in the details.
const maxRaw = 16 << 10

// maxDetailString is what a details string is cut to when the details make
// the finding too large.
const maxDetailString = 4096

// ValidString returns s with every run of bytes that is not UTF-8 replaced
// by U+FFFD.
func ValidString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Escape returns s as a Go string literal without its quotes: valid
// printable text stays as it is, every byte that is not UTF-8 becomes \xNN,
// and strconv.Unquote(`"` + Escape(s) + `"`) gives s back byte for byte.
func Escape(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Truncate cuts s to at most n bytes on a rune boundary, ending it with an
// ellipsis when something was cut and there is room for one.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < 0 {
		n = 0
	}
	ell := ""
	if n >= 16 {
		ell, n = "…", n-len("…")
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ell
}

// Details converts a check's details to a Struct. It never fails: values
// structpb cannot hold directly (typed slices and maps, structs, errors,
// byte slices) are converted the way encoding/json would write them, and
// strings are taken byte for byte, to be made valid by Sanitize with their
// originals kept.
func Details(m map[string]any) *structpb.Struct {
	if m == nil {
		return nil
	}
	st := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(m))}
	for k, v := range m {
		st.Fields[k] = toValue(v, 1)
	}
	return st
}

func str(s string) *structpb.Value {
	// Not structpb.NewStringValue's checks: invalid bytes are kept here so
	// that Sanitize can record them before making the string valid.
	return &structpb.Value{Kind: &structpb.Value_StringValue{StringValue: s}}
}

func toValue(v any, depth int) *structpb.Value {
	if depth > maxDepth {
		return str("(nested too deep)")
	}
	switch x := v.(type) {
	case nil:
		return structpb.NewNullValue()
	case string:
		return str(x)
	case bool:
		return structpb.NewBoolValue(x)
	case []byte:
		return str(base64.StdEncoding.EncodeToString(x))
	case *structpb.Value:
		if x == nil {
			return structpb.NewNullValue()
		}
		return x
	case *structpb.Struct:
		if x == nil {
			return structpb.NewNullValue()
		}
		return structpb.NewStructValue(x)
	case *structpb.ListValue:
		if x == nil {
			return structpb.NewNullValue()
		}
		return structpb.NewListValue(x)
	case error:
		return str(x.Error())
	case json.Marshaler, encoding.TextMarshaler:
		return viaJSON(v, depth)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		return str(rv.String())
	case reflect.Bool:
		return structpb.NewBoolValue(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return structpb.NewNumberValue(float64(rv.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return structpb.NewNumberValue(float64(rv.Uint()))
	case reflect.Float32, reflect.Float64:
		return structpb.NewNumberValue(rv.Float())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return structpb.NewNullValue()
		}
		l := &structpb.ListValue{Values: make([]*structpb.Value, rv.Len())}
		for i := range rv.Len() {
			l.Values[i] = toValue(rv.Index(i).Interface(), depth+1)
		}
		return structpb.NewListValue(l)
	case reflect.Map:
		if rv.IsNil() {
			return structpb.NewNullValue()
		}
		st := &structpb.Struct{Fields: make(map[string]*structpb.Value, rv.Len())}
		it := rv.MapRange()
		for it.Next() {
			k := it.Key()
			key := fmt.Sprint(k.Interface())
			if k.Kind() == reflect.String {
				key = k.String()
			}
			st.Fields[key] = toValue(it.Value().Interface(), depth+1)
		}
		return structpb.NewStructValue(st)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return structpb.NewNullValue()
		}
		return toValue(rv.Elem().Interface(), depth+1)
	case reflect.Struct:
		return viaJSON(v, depth)
	}
	return str(fmt.Sprint(v))
}

// viaJSON converts what only encoding/json knows how to write (structs with
// tags, time.Time). json writes invalid UTF-8 as U+FFFD, so the original
// bytes of strings inside such values are not kept; checks put plain maps,
// lists and strings in details for that reason.
func viaJSON(v any, depth int) *structpb.Value {
	b, err := json.Marshal(v)
	if err != nil {
		return str(fmt.Sprint(v))
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		return str(string(b))
	}
	return toValue(g, depth+1)
}

// Sanitize changes f in place so that it passes Validate whenever anything
// can make it (only the clock, a missing check or observed_at, and sequence
// numbers are beyond it): strings that are not valid UTF-8 are made valid
// and their originals kept escaped in the details ("<field>_raw"); fields
// over their limit are cut ("<field>_truncated_from"); NaN and infinities
// in details become strings; evidence that is malformed or over
// MaxEvidenceBytes is dropped ("evidence_dropped": why); details that make
// the finding too large are cut, then dropped ("details_dropped": why).
// It returns one note per change, for the agent's log.
func Sanitize(f *vigilv1.Finding) []string {
	if f == nil {
		return nil
	}
	s := &sanitizer{f: f}
	if f.Details != nil {
		s.fixStruct(f.Details, "details", 1)
	}
	s.field("message", &f.Message, MaxMessage)
	for _, fl := range shortFields(f) {
		s.field(fl.name, fl.v, MaxShort)
	}
	s.field("device_id", &f.DeviceId, MaxShort)
	for _, fl := range screenMatchFields(f) {
		s.field(fl.name, fl.v, MaxMessage)
	}
	switch {
	case f.Severity < vigilv1.Severity_SEVERITY_INFO:
		s.note("severity %d raised to info", f.Severity)
		f.Severity = vigilv1.Severity_SEVERITY_INFO
	case f.Severity > vigilv1.Severity_SEVERITY_CRITICAL:
		s.note("severity %d lowered to critical", f.Severity)
		f.Severity = vigilv1.Severity_SEVERITY_CRITICAL
	}
	s.evidence()
	s.fitBody()
	return s.notes
}

type sanitizer struct {
	f     *vigilv1.Finding
	notes []string
}

func (s *sanitizer) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// put sets a details key Sanitize adds, never overwriting one the check set.
func (s *sanitizer) put(key string, v *structpb.Value) {
	if s.f.Details == nil {
		s.f.Details = &structpb.Struct{Fields: map[string]*structpb.Value{}}
	}
	if s.f.Details.Fields == nil {
		s.f.Details.Fields = map[string]*structpb.Value{}
	}
	putUnique(s.f.Details, key, v)
}

func putUnique(st *structpb.Struct, key string, v *structpb.Value) string {
	for {
		if _, taken := st.Fields[key]; !taken {
			st.Fields[key] = v
			return key
		}
		key += "_"
	}
}

// field makes a top-level string valid and cuts it to max.
func (s *sanitizer) field(name string, p *string, max int) {
	if !utf8.ValidString(*p) {
		s.put(name+RawSuffix, str(Truncate(Escape(*p), maxRaw)))
		*p = ValidString(*p)
		s.note("%s was not valid UTF-8; original kept escaped in details.%s%s", name, name, RawSuffix)
	}
	if len(*p) > max {
		s.put(name+TruncatedSuffix, structpb.NewNumberValue(float64(len(*p))))
		s.note("%s of %d bytes cut to %d", name, len(*p), max)
		*p = Truncate(*p, max)
	}
}

// fixStruct makes every key and string in st valid, in place, adding the
// raw siblings next to what changed.
func (s *sanitizer) fixStruct(st *structpb.Struct, path string, depth int) {
	keys := make([]string, 0, len(st.Fields))
	for k := range st.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic names when raw keys collide
	for _, k := range keys {
		v := st.Fields[k]
		key := k
		if !utf8.ValidString(k) {
			delete(st.Fields, k)
			key = putUnique(st, ValidString(k), v)
			putUnique(st, key+RawKeySuffix, str(Truncate(Escape(k), maxRaw)))
			s.note("a key in %s was not valid UTF-8", path)
		}
		if v == nil {
			st.Fields[key] = structpb.NewNullValue()
			continue
		}
		if raw := s.fixValue(v, path+"."+key, depth); raw != nil {
			putUnique(st, key+RawSuffix, raw)
		}
	}
}

// fixValue makes v valid in place and returns what to keep as its raw
// sibling, or nil when nothing was changed that needs one.
func (s *sanitizer) fixValue(v *structpb.Value, path string, depth int) *structpb.Value {
	if depth > maxDepth {
		v.Kind = &structpb.Value_StringValue{StringValue: "(nested too deep)"}
		s.note("%s nested deeper than %d; replaced", path, maxDepth)
		return nil
	}
	switch k := v.GetKind().(type) {
	case nil:
		v.Kind = &structpb.Value_NullValue{}
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			raw := str(Truncate(Escape(k.StringValue), maxRaw))
			k.StringValue = ValidString(k.StringValue)
			s.note("%s was not valid UTF-8; original kept escaped in %s%s", path, path, RawSuffix)
			return raw
		}
	case *structpb.Value_NumberValue:
		if !finite(k.NumberValue) {
			v.Kind = &structpb.Value_StringValue{StringValue: strconv.FormatFloat(k.NumberValue, 'g', -1, 64)}
		}
	case *structpb.Value_StructValue:
		if k.StructValue == nil {
			v.Kind = &structpb.Value_NullValue{}
			break
		}
		if k.StructValue.Fields == nil {
			k.StructValue.Fields = map[string]*structpb.Value{}
		}
		s.fixStruct(k.StructValue, path, depth+1)
	case *structpb.Value_ListValue:
		if k.ListValue == nil {
			v.Kind = &structpb.Value_NullValue{}
			break
		}
		var mirror []*structpb.Value
		for i, x := range k.ListValue.Values {
			if x == nil {
				x = structpb.NewNullValue()
				k.ListValue.Values[i] = x
			}
			raw := s.fixValue(x, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if raw == nil {
				continue
			}
			if mirror == nil {
				mirror = make([]*structpb.Value, len(k.ListValue.Values))
				for j := range mirror {
					mirror[j] = structpb.NewNullValue()
				}
			}
			mirror[i] = raw
		}
		if mirror != nil {
			return structpb.NewListValue(&structpb.ListValue{Values: mirror})
		}
	}
	return nil
}

// evidence drops all of f's evidence when any of it breaks the contract:
// partial evidence would make a reviewer trust an incomplete picture.
func (s *sanitizer) evidence() {
	f := s.f
	if len(f.Evidence) == 0 && len(f.EvidenceData) == 0 {
		return
	}
	for _, r := range f.Evidence {
		if r != nil && !utf8.ValidString(r.MediaType) {
			s.put("evidence_media_type"+RawSuffix, str(Truncate(Escape(r.MediaType), maxRaw)))
			r.MediaType = ValidString(r.MediaType)
			s.note("evidence media type was not valid UTF-8")
		}
	}
	err := validateEvidence(f, true)
	if err == nil {
		return
	}
	reason := fmt.Sprintf("%v; %d evidence bytes not kept", err, EvidenceSize(f))
	f.Evidence, f.EvidenceData = nil, nil
	s.put(KeyEvidenceDropped, str(reason))
	s.note("evidence dropped: %s", reason)
}

// fitBody cuts long strings in the details, then drops the details, until
// the finding fits MaxBodyBytes.
func (s *sanitizer) fitBody() {
	n := BodySize(s.f)
	if n <= MaxBodyBytes || s.f.Details == nil {
		return
	}
	cutStrings(structpb.NewStructValue(s.f.Details), 0)
	s.put(KeyDetailsCut, str(fmt.Sprintf("details strings over %d bytes were cut: the finding was %d bytes, the limit is %d", maxDetailString, n, MaxBodyBytes)))
	s.note("details of a %d-byte finding cut to fit %d", n, MaxBodyBytes)
	if BodySize(s.f) <= MaxBodyBytes {
		return
	}
	s.f.Details = &structpb.Struct{Fields: map[string]*structpb.Value{
		KeyDetailsDropped: str(fmt.Sprintf("details did not fit: the finding was %d bytes, the limit is %d", n, MaxBodyBytes)),
	}}
	s.note("details dropped: the finding was %d bytes", n)
}

func cutStrings(v *structpb.Value, depth int) {
	if depth > maxDepth {
		return
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		k.StringValue = Truncate(k.StringValue, maxDetailString)
	case *structpb.Value_StructValue:
		for _, x := range k.StructValue.GetFields() {
			cutStrings(x, depth+1)
		}
	case *structpb.Value_ListValue:
		for _, x := range k.ListValue.GetValues() {
			cutStrings(x, depth+1)
		}
	}
}
