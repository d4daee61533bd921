// Package match finds the terms of Vigil's open keyword libraries in screen
// text (window titles, OCR output) with obfuscation-resistant, precision-
// minded matching.
//
// Text and terms are normalised the same way (case folding, NFKC,
// diacritics removal, Cyrillic/Greek lookalikes, leetspeak with an i/l
// class, squashed repeats, spaced-out letters joined) while keeping a map
// from every normalised symbol back to its byte span in the original text,
// so a Match reports the span of the original text. Terms match whole words
// only: a term never starts or ends inside a word ("rapist" is not found in
// "therapist"). The words of a phrase may be joined or separated in the
// text ("kill myself", "killmyself", "kill-myself") and, with gap=N, up to
// N other words may come between them. Each term may list except= words or
// phrases that cancel a match when they occur within ContextWords words.
//
// Libraries are plain text files (ParseLibrary) with a rationale for every
// term, and test-case files (ParseCases) beside them; LoadDir, LoadFS and
// CheckDir load and test a directory of them. The exact rules are in
// docs/matcher.md.
//
// Matching uses one Aho–Corasick DFA over the normalised symbol stream for
// all terms, then verifies word boundaries, gaps, exact forms and
// exclusions for each candidate. A Matcher is immutable and safe for
// concurrent use; per-call scratch buffers are pooled.
package match
