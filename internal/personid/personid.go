// Package personid is the one place that decides whether two spellings of
// a user name are the same person. A device reports the signed-in account
// as the OS spells it (`SCHOOL\jsmith` on a domain-joined Windows laptop,
// `jsmith@school.example` on an Entra-joined one, `jsmith` on a Mac), the
// school's MIS exports usernames or e-mail addresses, and console accounts
// have a username and an e-mail address. Routing an alert, hiding it from
// the person it is about and importing the people directory must all agree,
// or an alert about a DSL is shown to that DSL because one path spelled the
// name differently (issue 8 item 8).
package personid

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Canonical returns the key people are matched on, or "" when s names
// nobody. The rules, in order:
//
//  1. Unicode NFKC, so compatibility forms (fullwidth `ｄｓｌ１`, ligatures,
//     fullwidth `＼` and `＠`) read as the plain characters.
//  2. Characters that do not show are dropped: format characters (Cf: zero
//     width space/joiners U+200B-U+200D, U+FEFF, soft hyphen U+00AD, bidi
//     controls), other default-ignorable code points and variation
//     selectors, control characters, all white space, and bytes that are not
//     UTF-8. Nobody tells `dsl1` and `dsl 1` or `dsl​1` apart on screen, and
//     people-directory usernames never contain white space.
//  3. Full Unicode case folding (then NFKC again, as NFKC_Casefold does).
//  4. The domain is dropped: what follows the last `\` of `DOMAIN\user`, and
//     what precedes the last `@` of `user@domain`. A NetBIOS domain
//     (`SCHOOL`) and a DNS domain (`school.example`) of the same directory
//     cannot be told to be the same by looking at them, and one collector
//     serves one school, so keeping either would make `SCHOOL\dsl1` and
//     `dsl1@school.example` two people. The cost is that `jsmith` of two
//     different domains is one person, which errs towards hiding an alert
//     from a reviewer rather than showing it to its subject.
//
// Look-alike letters from other scripts (Cyrillic `ѕ` for `s`) are kept:
// they are different accounts to the OS, and someone who can rename their
// own account can rename it to anything.
func Canonical(s string) string {
	if c, ok := canonicalASCII(s); ok {
		return c
	}
	s = norm.NFKC.String(strings.ToValidUTF8(s, ""))
	s = strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, s)
	s = norm.NFKC.String(cases.Fold().String(s))
	return stripDomain(s)
}

// Same reports whether a and b name the same person; a name that canonicalises
// to nothing is nobody, and the same as nobody.
func Same(a, b string) bool {
	ca := Canonical(a)
	return ca != "" && ca == Canonical(b)
}

// canonicalASCII is the fast path for the usual case (the console lists and
// routes thousands of alerts per request): printable ASCII needs no
// normalisation, and folding it is lower-casing.
func canonicalASCII(s string) (string, bool) {
	lower := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= utf8.RuneSelf {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	if !lower {
		s = strings.ToLower(s)
	}
	return stripDomain(s), true
}

func stripDomain(s string) string {
	if i := strings.LastIndexByte(s, '\\'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	return s
}

// invisible: characters that change the string without changing what a
// reader sees (see Canonical, rule 2).
func invisible(r rune) bool {
	return r == utf8.RuneError ||
		unicode.IsSpace(r) ||
		unicode.In(r, unicode.Cf, unicode.Cc, unicode.Zs, unicode.Zl, unicode.Zp,
			unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point, unicode.White_Space)
}
