package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // --timezone works where the OS has no zone database (Windows servers)
)

// Schedule is the school's working hours in its local time, for the
// out-of-hours notification chain.
type Schedule struct {
	loc   *time.Location
	spans []span
	text  string
}

type span struct {
	days     [7]bool // by time.Weekday
	from, to int     // minutes after local midnight, from < to
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseSchedule reads working hours such as "mon-fri 08:00-17:00" or
// "mon-thu 08:00-17:00, fri 08:00-15:30": comma-separated clauses of a day
// or day range (sun mon tue wed thu fri sat; a range may wrap, "fri-mon")
// and a time range HH:MM-HH:MM within the day (end after start; 24:00 is the
// end of the day), in loc. Outside every clause is out of hours.
func ParseSchedule(s string, loc *time.Location) (*Schedule, error) {
	if loc == nil {
		return nil, fmt.Errorf("working hours %q: no time zone", s)
	}
	sc := &Schedule{loc: loc, text: strings.TrimSpace(s)}
	for _, clause := range strings.Split(s, ",") {
		fields := strings.Fields(clause)
		if len(fields) != 2 {
			return nil, fmt.Errorf("working hours %q: want clauses like \"mon-fri 08:00-17:00\", separated by commas", s)
		}
		var sp span
		d1, d2, isRange := strings.Cut(strings.ToLower(fields[0]), "-")
		a, ok1 := weekdays[d1]
		b, ok2 := weekdays[d2]
		if !isRange {
			b, ok2 = a, ok1
		}
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("working hours %q: %q is not a day or day range (mon, tue, ..., sun; mon-fri)", s, fields[0])
		}
		for d := a; ; d = (d + 1) % 7 {
			sp.days[d] = true
			if d == b {
				break
			}
		}
		t1, t2, ok := strings.Cut(fields[1], "-")
		var err1, err2 error
		sp.from, err1 = clock(t1)
		sp.to, err2 = clock(t2)
		if !ok || err1 != nil || err2 != nil || sp.from >= sp.to {
			return nil, fmt.Errorf("working hours %q: %q is not a time range HH:MM-HH:MM ending after it starts", s, fields[1])
		}
		sc.spans = append(sc.spans, sp)
	}
	return sc, nil
}

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh > 24 || mm > 59 || hh == 24 && mm != 0 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return hh*60 + mm, nil
}

// Working reports whether t is within working hours.
func (sc *Schedule) Working(t time.Time) bool {
	lt := t.In(sc.loc)
	m := lt.Hour()*60 + lt.Minute()
	for _, sp := range sc.spans {
		if sp.days[lt.Weekday()] && sp.from <= m && m < sp.to {
			return true
		}
	}
	return false
}

// String is the schedule as given, with its time zone.
func (sc *Schedule) String() string { return sc.text + " (" + sc.loc.String() + ")" }
