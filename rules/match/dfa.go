package match

// dfa is an Aho–Corasick automaton compiled to a DFA over symbol classes.
// State ids are premultiplied (state*stride). States are numbered in three
// groups: without outputs, with only "closed" outputs (from outFirst), and
// with an "open" output (from outMin), so the scan loop tests one
// comparison. A closed pattern must end at the end of a word: in a
// prefilter automaton, the transitions of closed-output states on the
// separator, line-break and slow classes carry endBit, and the scan reports
// them when the word has ended; all other automata treat every output as
// open.
type dfa struct {
	stride   uint32
	trans    []uint32
	outFirst uint32  // first state with outputs
	outMin   uint32  // first state with an open output
	outStart []int32 // per output state ((id-outFirst)/stride), into outList; one extra at the end
	outList  []int32 // pattern ids
}

// alphabet maps symbols to classes 1..n-1; class 0 is every symbol that
// occurs in no pattern.
type alphabet struct {
	small [0x800]uint16 // symbols below U+0800 (ASCII, Latin, Greek, Cyrillic, Arabic): an array, not the map
	cls   map[uint32]uint16
	n     uint16
}

func (a *alphabet) add(s uint32) {
	if s < uint32(len(a.small)) {
		if a.small[s] == 0 {
			a.small[s] = a.n
			a.n++
		}
		return
	}
	if _, ok := a.cls[s]; !ok {
		a.cls[s] = a.n
		a.n++
	}
}

func (a *alphabet) class(s uint32) uint16 {
	if s < uint32(len(a.small)) {
		return a.small[s]
	}
	return a.cls[s]
}

// outputs returns the pattern ids recognised in output state s.
func (d *dfa) outputs(s uint32) []int32 {
	o := (s - d.outFirst) / d.stride
	return d.outList[d.outStart[o]:d.outStart[o+1]]
}

// Extra classes of the prefilter automaton, after the alphabet's classes.
const (
	preSep  = iota // separator: the state is kept
	preNL          // line break: back to the root
	preSlow        // needs full classification: the state is kept, slowBit set
	preExtra
)

// Flags on prefilter transitions (the state is in the other bits).
const (
	slowBit  = 1 << 31 // the byte needs the slow path
	endBit   = 1 << 30 // a word ended after a closed-output state
	nlBit    = 1 << 29 // ... at a line break (then back to the root)
	flagMask = slowBit | endBit | nlBit
)

// buildDFA constructs the automaton for pats (nil entries are skipped). A
// prefilter automaton (pre) squashes repeated symbols (reading the symbol
// that led into a state keeps the state) and has the extra classes above.
// open[p] marks the patterns that may end inside a word (nil: all).
func buildDFA(pats [][]uint32, a *alphabet, pre bool, open []bool) dfa {
	stride := int(a.n)
	if pre {
		stride += preExtra
	}
	gotoT := make([]int32, stride) // row per state; -1 = no edge
	for i := range gotoT {
		gotoT[i] = -1
	}
	own := [][]int32{nil}
	label := []int32{-1}
	for id, p := range pats {
		if len(p) == 0 {
			continue
		}
		st := 0
		for _, s := range p {
			c := int(a.class(s))
			nx := gotoT[st*stride+c]
			if nx < 0 {
				nx = int32(len(own))
				own = append(own, nil)
				label = append(label, int32(c))
				for range stride {
					gotoT = append(gotoT, -1)
				}
				gotoT[st*stride+c] = nx
			}
			st = int(nx)
		}
		own[st] = append(own[st], int32(id))
	}
	ns := len(own)
	// BFS: failure links, full transitions (in place) and merged outputs.
	fail := make([]int32, ns)
	outs := make([][]int32, ns)
	delta := gotoT
	queue := make([]int32, 0, ns)
	for c := 0; c < stride; c++ {
		if v := delta[c]; v >= 0 {
			queue = append(queue, v)
		} else {
			delta[c] = 0
		}
	}
	if pre {
		// The extra classes never occur in patterns; fill them for the root
		// now (its row is read by the BFS) and for other states below.
		base := int(a.n)
		delta[base+preSep], delta[base+preNL], delta[base+preSlow] = 0, 0, 0
	}
	for qi := 0; qi < len(queue); qi++ {
		u := int(queue[qi])
		outs[u] = append(append([]int32(nil), own[u]...), outs[fail[u]]...)
		for c := 0; c < stride; c++ {
			v := delta[u*stride+c]
			if v >= 0 {
				fail[v] = delta[int(fail[u])*stride+c]
				queue = append(queue, v)
			} else {
				delta[u*stride+c] = delta[int(fail[u])*stride+c]
			}
		}
	}
	if pre {
		base := int(a.n)
		for u := 0; u < ns; u++ {
			row := delta[u*stride : (u+1)*stride]
			row[base+preSep] = int32(u)
			row[base+preNL] = 0
			row[base+preSlow] = int32(u)
			if u != 0 {
				row[label[u]] = int32(u) // squash: a repeated symbol keeps the state
			}
		}
	}
	// Renumber: states without outputs first (the root stays 0).
	// Both groups in breadth-first order, so that the shallow states, where
	// a scan spends most of its time, share cache lines.
	bfs := append([]int32{0}, queue...)
	group := func(s int) int {
		if len(outs[s]) == 0 {
			return 0
		}
		for _, p := range outs[s] {
			if open == nil || open[p] {
				return 2
			}
		}
		return 1
	}
	newID := make([]uint32, ns)
	order := make([]int, 0, ns)
	var firstOut, firstOpen int
	for g := 0; g < 3; g++ {
		if g == 1 {
			firstOut = len(order)
		}
		if g == 2 {
			firstOpen = len(order)
		}
		for _, s32 := range bfs {
			if s := int(s32); group(s) == g {
				newID[s] = uint32(len(order))
				order = append(order, s)
			}
		}
	}
	d := dfa{stride: uint32(stride), trans: make([]uint32, ns*stride),
		outFirst: uint32(firstOut * stride), outMin: uint32(firstOpen * stride)}
	for ni, s := range order {
		row := d.trans[ni*stride : (ni+1)*stride]
		for c := range row {
			row[c] = newID[delta[s*stride+c]] * uint32(stride)
		}
		if pre {
			base := int(a.n)
			row[base+preSlow] |= slowBit
			if group(s) == 1 {
				row[base+preSep] |= endBit
				row[base+preNL] = uint32(ni*stride) | endBit | nlBit
				row[base+preSlow] |= endBit
			}
		}
	}
	if ns*stride >= nlBit {
		panic("match: automaton too large")
	}
	d.outStart = make([]int32, 0, ns-firstOut+1)
	for _, s := range order[firstOut:] {
		d.outStart = append(d.outStart, int32(len(d.outList)))
		d.outList = append(d.outList, outs[s]...)
	}
	d.outStart = append(d.outStart, int32(len(d.outList)))
	return d
}

// gsquash returns p with every run of a repeated symbol collapsed to one.
func gsquash(p []uint32) []uint32 {
	var out []uint32
	for i, s := range p {
		if i == 0 || s != p[i-1] {
			out = append(out, s)
		}
	}
	return out
}
