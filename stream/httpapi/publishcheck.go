package httpapi

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// What a published value may hold beyond being a JSON object, checked by
// decodePublish before anything is published (docs/protocol.md):
//   - valid UTF-8: a value goes into WebSocket text frames, and a browser
//     must drop a connection whose text frame is not UTF-8, so one bad
//     value would throw every page that shows it into a reconnect loop;
//   - numbers that are numbers: 1e400 is valid JSON syntax but no float64,
//     and JavaScript reads it as Infinity;
//   - a ts between minPublishTS and maxPublishAhead from now: a sample
//     time decades away is a mistake (seconds sent as milliseconds, a
//     placeholder), and pages would call its value stale or from the
//     future.

// minPublishTS is the earliest sample time a publish may carry: 2000-01-01
// UTC, in Unix milliseconds. Seconds sent by mistake (1.7e9) fall below it.
const minPublishTS = 946684800000

// maxPublishAhead is how far in the future a sample time may be, for
// publishers whose clocks run ahead.
const maxPublishAhead = 24 * time.Hour

// checkPublishTS reports what is wrong with ts (Unix ms) as a sample time
// at now.
func checkPublishTS(ts int64, now time.Time) error {
	maxTS := now.Add(maxPublishAhead).UnixMilli()
	if ts < minPublishTS || ts > maxTS {
		hint := ""
		if ts > 0 && ts < minPublishTS && ts*1000 >= minPublishTS && ts*1000 <= maxTS {
			hint = " (this looks like seconds)"
		}
		return fmt.Errorf(`"ts" %d is not a sample time: want Unix milliseconds between %d (2000-01-01) and %d (one day from now)%s`,
			ts, int64(minPublishTS), maxTS, hint)
	}
	return nil
}

// checkNumbers reports a number in data (compact JSON, already validated)
// that is too large for a float64, such as 1e400. Numbers that are too
// small to tell from 0 read as 0 everywhere and are left alone.
func checkNumbers(data []byte) error {
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped character cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '-' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(data) && isNumberByte(data[j]) {
				j++
			}
			f, err := strconv.ParseFloat(string(data[i:j]), 64)
			if err != nil || math.IsInf(f, 0) {
				return fmt.Errorf("the number %.40s is out of range (a float64 holds up to about 1.8e308)", data[i:j])
			}
			i = j - 1
		}
	}
	return nil
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// errNotUTF8 refuses a publish body that is not valid UTF-8.
var errNotUTF8 = errors.New("the body is not valid UTF-8 (values are sent in WebSocket text frames, which must be)")
