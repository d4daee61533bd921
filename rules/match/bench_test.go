package match

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"

	"github.com/vigil-safeguarding/vigil/rules"
)

// Benchmark corpus: ~1 MB of deterministic, realistic screen text (window
// titles, search queries, chat lines) with a few obfuscated terms.

var (
	benchWords = strings.Fields(`the a to and of in is it you that for on with this my me was
		at be are have not but what all can your just so like do get out up if about who
		homework maths english science history geography year test exam revision teacher
		class lesson school bus lunch break football basketball netball hockey practice
		shooting drills goal score match team coach training photo film camera video edit
		hair cut paper scissors price sale shop shoes jacket phone game minecraft roblox
		fortnite level boss fight win lose play stream youtube tiktok snapchat instagram
		music song album lyrics dance party birthday weekend holiday summer winter friday
		tired bored hungry happy sad angry stressed worried excited funny lol omg tbh idk
		tonight tomorrow today yesterday later soon never always really very quite`)
	benchSites = []string{"Google Chrome", "Mozilla Firefox", "Microsoft Edge", "YouTube", "Google Search",
		"Microsoft Word", "PowerPoint", "Teams", "Discord", "WhatsApp", "Roblox", "Minecraft Launcher", "BBC Bitesize"}
	benchChat = []string{"this homework will kill me", "lol that test was so hard", "see u at practice",
		"i'm dying of laughter", "she cut her hair really short", "we shot a film for media studies",
		"who's coming to the match on saturday", "my phone is about to die", "that boss fight was insane",
		"can someone send me the maths answers", "photo shoot for the yearbook tomorrow", "i could murder a pizza"}
	benchObfuscated = []string{"k i l l   m y s e l f", "i want to d1e", "su1c1de note", "c.u.t myself",
		"KILL MYSELF", "kіll mуself", "i wanna die fr", "self h4rm"}
)

func benchText(size int) string {
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	words := func(n int) string {
		ws := make([]string, n)
		for i := range ws {
			ws[i] = benchWords[r.IntN(len(benchWords))]
		}
		return strings.Join(ws, " ")
	}
	for sb.Len() < size {
		switch r.IntN(10) {
		case 0, 1, 2:
			fmt.Fprintf(&sb, "%s - %s - %s\n", words(2+r.IntN(5)), benchSites[r.IntN(len(benchSites))], benchSites[r.IntN(3)])
		case 3, 4:
			fmt.Fprintf(&sb, "%s - Google Search\n", words(2+r.IntN(4)))
		case 5, 6:
			fmt.Fprintf(&sb, "%s\n", benchChat[r.IntN(len(benchChat))])
		case 7:
			fmt.Fprintf(&sb, "Year %d %s revision notes.docx - Microsoft Word\n", 7+r.IntN(6), words(2))
		default:
			line := words(4 + r.IntN(10))
			if r.IntN(40) == 0 {
				line += " " + benchObfuscated[r.IntN(len(benchObfuscated))]
			}
			fmt.Fprintf(&sb, "%s\n", line)
		}
	}
	return sb.String()
}

// benchTerms300 returns ~300 realistic safeguarding phrases.
func benchTerms300() []string {
	base := strings.Split(`kill myself|want to die|suicide note|end it all|cut myself|self harm|hang myself|
overdose|no reason to live|better off dead|kill yourself|kys|slit my wrists|jump off a bridge|
pro ana|thinspo|starve myself|purge|bring a knife|stab him|shoot up the school|school shooting|
bomb threat|pipe bomb|gun to school|beat him up|send nudes|our little secret|dont tell your parents|
delete this chat|meet up alone|how old are you really|cam girl|sugar daddy|onlyfans|nudes|
buy weed|sell pills|ketamine|cocaine|mdma|xanax|vape shop|county lines|
join the cause|race war|white power|jihad|great replacement|accelerationism|
blackout challenge|skull breaker challenge|momo challenge|tide pod challenge|
vpn free|proxy unblocked|tor browser|unblocked games|bypass school filter`, "|")
	var terms []string
	for _, b := range base {
		terms = append(terms, strings.TrimSpace(b))
	}
	verbs := []string{"kill", "hurt", "cut", "burn", "starve", "hang", "poison", "drown", "shoot", "stab"}
	objs := []string{"myself", "yourself", "himself", "herself", "themselves", "my teacher", "my dad", "my mum"}
	for _, v := range verbs {
		for _, o := range objs {
			terms = append(terms, v+" "+o)
		}
	}
	hows := []string{"how to make a bomb", "how to get a gun", "how to buy drugs", "how to overdose",
		"how to self harm", "how to hide cuts", "how to lose weight fast", "how to run away"}
	terms = append(terms, hows...)
	adjs := []string{"free", "cheap", "real", "secret", "anonymous", "private", "hidden", "live", "hot"}
	nouns := []string{"chat", "cam", "pics", "dating", "hookup", "casino", "betting", "pills", "vapes", "knives", "weapons", "proxy", "vpn", "stream", "escort", "loans", "crypto"}
	for _, a := range adjs {
		for _, n := range nouns {
			if len(terms) >= 300 {
				break
			}
			terms = append(terms, a+" "+n)
		}
	}
	return terms
}

// benchTerms10k returns 10,000 generated words and phrases.
func benchTerms10k() []string {
	r := rand.New(rand.NewPCG(3, 4))
	syl := strings.Fields("ba be bi bo bu ka ke ki ko ku ra re ri ro ru sa se si so su ta te ti to tu na ne ni no nu ma me mi mo mu la le li lo lu da de di do du ga ge go fa fe fo pa pe po va ve vo za ze zo sha sho cha cho tra tre pro pla ble ste sto qua")
	seen := map[string]bool{}
	var terms []string
	for len(terms) < 10000 {
		nw := 1 + r.IntN(3)
		ws := make([]string, nw)
		for i := range ws {
			var w strings.Builder
			for range 2 + r.IntN(3) {
				w.WriteString(syl[r.IntN(len(syl))])
			}
			ws[i] = w.String()
		}
		t := strings.Join(ws, " ")
		if k := Normalize(t); !seen[k] {
			seen[k] = true
			terms = append(terms, t)
		}
	}
	return terms
}

func benchLibrary(terms []string) *Library {
	lib := &Library{RuleID: "bench", Category: "bench", Severity: rules.High}
	for _, t := range terms {
		lib.Terms = append(lib.Terms, Term{Text: t, Severity: rules.High})
	}
	return lib
}

var benchOnce = sync.OnceValue(func() string { return benchText(1 << 20) })

// benchMultilingual is the corpus with about one line in six in another
// language UK pupils write (Welsh, Polish, Urdu in Arabic script and
// romanised, Arabic, Russian, Greek), so that the non-ASCII paths of the
// normaliser and the prefilter are measured too.
var benchMultilingual = sync.OnceValue(func() string {
	lines := []string{
		"gwaith cartref mathemateg - Google Search", "dw i'n mynd i'r gêm rygbi dydd Sadwrn", "Hanes Cymru: Owain Glyndŵr - BBC Bitesize",
		"zadanie domowe z matematyki - Szukaj w Google", "Łódź: pogoda na jutro", "jak napisać wypracowanie o lekturze",
		"اردو کی کتاب - Google Search", "کرکٹ میچ آج کب ہے", "aaj ka cricket match kab hai", "ammi ne khana banaya",
		"واجب الرياضيات للصف السابع - بحث Google", "أُرِيدُ أَنْ أَتَعَلَّمَ البرمجة", "مباراة كرة القدم اليوم",
		"Как решить уравнение - Поиск в Google", "Ноты для фортепиано", "Όχι, ευχαριστώ - μετάφραση",
	}
	base := benchText(1 << 20)
	r := rand.New(rand.NewPCG(5, 6))
	var sb strings.Builder
	for _, l := range strings.SplitAfter(base, "\n") {
		sb.WriteString(l)
		if r.IntN(5) == 0 {
			sb.WriteString(lines[r.IntN(len(lines))] + "\n")
		}
		if sb.Len() >= 1<<20 {
			break
		}
	}
	return sb.String()
})

// benchAllLibraries loads every published library and language pack.
func benchAllLibraries(b *testing.B) ([]*Library, []string) {
	libs, _, errs := LoadDir("../keywords")
	if errs != nil {
		b.Fatal(errs)
	}
	var terms []string
	for _, l := range libs {
		for _, t := range l.Terms {
			terms = append(terms, t.Text)
		}
	}
	return libs, terms
}

func BenchmarkMatch(b *testing.B) {
	allLibs, allTerms := benchAllLibraries(b)
	for _, set := range []struct {
		name  string
		libs  []*Library
		terms []string
		text  string
	}{
		{"300terms", []*Library{benchLibrary(benchTerms300())}, benchTerms300(), benchOnce()},
		{"10kterms", []*Library{benchLibrary(benchTerms10k())}, benchTerms10k(), benchOnce()},
		// Every published library and language pack, as an agent with all
		// packs enabled runs, on text with other languages in it.
		{"libraries", allLibs, allTerms, benchMultilingual()},
	} {
		text := set.text
		m, err := Compile(set.libs...)
		if err != nil {
			b.Fatal(err)
		}
		builder := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
			AsciiCaseInsensitive: true,
			MatchOnlyWholeWords:  true,
			MatchKind:            ahocorasick.LeftMostLongestMatch,
			DFA:                  true,
		})
		ac := builder.Build(set.terms)
		b.Run(set.name+"/vigil", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			var dst []Match
			n := 0
			for b.Loop() {
				dst = m.FindAppend(dst[:0], text)
				n = len(dst)
			}
			b.ReportMetric(float64(n), "matches")
		})
		b.Run(set.name+"/ahocorasick", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n = len(ac.FindAll(text))
			}
			b.ReportMetric(float64(n), "matches")
		})
		// ratio alternates both matchers on the same text in each iteration
		// (robust to noise from other processes) and reports how many times
		// faster ours is, normalisation included.
		b.Run(set.name+"/ratio", func(b *testing.B) {
			b.SetBytes(int64(2 * len(text)))
			var ours, theirs time.Duration
			var dst []Match
			for b.Loop() {
				t0 := time.Now()
				dst = m.FindAppend(dst[:0], text)
				t1 := time.Now()
				ac.FindAll(text)
				t2 := time.Now()
				ours += t1.Sub(t0)
				theirs += t2.Sub(t1)
			}
			b.ReportMetric(float64(theirs)/float64(ours), "x-faster")
			b.ReportMetric(float64(len(text))*float64(b.N)/ours.Seconds()/1e6, "vigil-MB/s")
			b.ReportMetric(float64(len(text))*float64(b.N)/theirs.Seconds()/1e6, "ac-MB/s")
		})
	}
}
