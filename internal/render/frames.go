package render

import (
	"fmt"
	"strings"
)

// frameSep separates the frames of a template error that went through include or tpl: each
// level adds "<template position>: executing ... at <include ...>: error calling include: ".
const frameSep = "error calling include: "

// compactFrames collapses runs of identical frames in a template error into one frame and a
// count. A recursive include fails after Helm's 1000 levels with a message of about 100 KB that
// is the same frame a thousand times; what matters is the first frame (where it started) and the
// last (the innermost cause), which stay.
func compactFrames(msg string) string {
	parts := strings.Split(msg, frameSep)
	if len(parts) < 3 {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(parts); {
		j := i + 1
		for j < len(parts)-1 && parts[j] == parts[i] {
			j++
		}
		if i > 0 {
			b.WriteString(frameSep)
		}
		b.WriteString(parts[i])
		if n := j - i; n > 1 {
			fmt.Fprintf(&b, "[the frame above repeats %d times] ", n)
		}
		i = j
	}
	return b.String()
}
