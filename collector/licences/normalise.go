// Package licences owns the software licence register and its
// reconciliation against the software the latest audit of each device
// found installed.
package licences

import (
	"strings"
	"unicode"
)

// editionWords are dropped from titles: a licence for "Microsoft Office
// 2021" covers Professional Plus as well as Standard, and installers add
// architecture and channel words the register never has. Product years
// (2019, 2021) are kept: they are different licences.
var editionWords = map[string]bool{
	"professional": true, "pro": true, "plus": true, "standard": true, "std": true,
	"home": true, "business": true, "enterprise": true, "education": true, "edu": true,
	"student": true, "students": true, "teacher": true, "ultimate": true, "premium": true,
	"edition": true, "dc": true, "x64": true, "x86": true, "amd64": true, "arm64": true,
	"64-bit": true, "32-bit": true, "64bit": true, "32bit": true, "bit": true,
	"version": true, "the": true, "for": true, "windows": true, "macos": true, "mac": true,
	"trial": true, "retail": true, "volume": true, "ltsc": true,
}

// Normalise turns a product or installed title into the key licences are
// matched by: lower case; parenthesised and bracketed parts, trademark
// signs and punctuation removed; version numbers, locales (en-us) and
// edition words dropped; years kept.
//
//	"Microsoft Office Professional Plus 2021 16.0.1" -> "microsoft office 2021"
//	"Adobe Acrobat Reader DC (64-bit)"               -> "adobe acrobat reader"
func Normalise(title string) string {
	var b strings.Builder
	depth := 0
	for _, r := range strings.ToLower(title) {
		switch {
		case r == '(' || r == '[':
			depth++
			b.WriteRune(' ')
		case r == ')' || r == ']':
			if depth > 0 {
				depth--
			}
			b.WriteRune(' ')
		case depth > 0:
		case r == '®' || r == '™' || r == '©':
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '-' || r == '+' || r == '#':
			b.WriteRune(r)
		default:
			b.WriteRune(' ')
		}
	}
	var out []string
	for _, w := range strings.Fields(b.String()) {
		w = strings.Trim(w, ".-")
		if w == "" || editionWords[w] || isVersion(w) || isLocale(w) {
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// productNumbers are numbers that name a product rather than a version.
var productNumbers = map[string]bool{"365": true, "360": true}

// isVersion: a token with a digit that is not a product year; "v2", "16.0.1",
// "2.3b", "11" (a major version). A year is four digits from 1990 to 2099.
func isVersion(w string) bool {
	hasDigit := false
	for _, r := range w {
		if unicode.IsDigit(r) {
			hasDigit = true
		}
	}
	if !hasDigit || productNumbers[w] {
		return false
	}
	if len(w) == 4 && (strings.HasPrefix(w, "19") && w >= "1990" || strings.HasPrefix(w, "20")) && allDigits(w) {
		return false
	}
	// A word that merely contains a digit (e.g. "3ds", "office365") is a
	// name, unless it is v<digits> or starts with a digit and has a dot.
	if w[0] == 'v' && allDigits(strings.ReplaceAll(w[1:], ".", "")) && len(w) > 1 {
		return true
	}
	return unicode.IsDigit(rune(w[0])) && (allDigits(w) || strings.Contains(w, "."))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// isLocale: en-us, en-gb, fr-fr.
func isLocale(w string) bool {
	return len(w) == 5 && w[2] == '-' && unicode.IsLetter(rune(w[0])) && unicode.IsLetter(rune(w[1])) &&
		unicode.IsLetter(rune(w[3])) && unicode.IsLetter(rune(w[4]))
}
