package classifier

import "strings"

// maxExceptionScan bounds how many log lines, from the end, are searched for the last
// exception.
const maxExceptionScan = 400

// lastException returns the type of the last exception the log reports, as printed
// ("torch.OutOfMemoryError", "java.lang.OutOfMemoryError", "ModuleNotFoundError"),
// and the line that reports it; "" when there is none. Python prints the exception that ended the program last; Java prints its root
// cause last ("Caused by: ..."), so the last one is the most telling in both.
func lastException(log string) (name, line string) {
	end := len(log)
	for range maxExceptionScan {
		if end <= 0 {
			break
		}
		start := strings.LastIndexByte(log[:end], '\n') + 1
		if name := exceptionOf(log[start:end]); name != "" {
			return name, log[start:end]
		}
		end = start - 1
	}
	return "", ""
}

// exceptionOf returns the exception type a line starts with, or "". It looks past
// the prefixes launchers add ("[rank3]:", "[default0]:", "E   ", "> ") and Java's
// "Caused by:" and `Exception in thread "main"`.
func exceptionOf(line string) string {
	s := strings.TrimSpace(line)
	for range 4 {
		switch {
		case strings.HasPrefix(s, "["):
			i := strings.IndexByte(s, ']')
			if i < 0 {
				return ""
			}
			s = strings.TrimLeft(s[i+1:], ": \t")
		case strings.HasPrefix(s, "Caused by:"):
			s = strings.TrimSpace(s[len("Caused by:"):])
		case strings.HasPrefix(s, "Exception in thread "):
			if i := strings.Index(s, "\" "); i >= 0 {
				s = s[i+2:]
			}
		case strings.HasPrefix(s, "E ") || strings.HasPrefix(s, "> "):
			s = strings.TrimSpace(s[2:])
		}
	}
	i := 0
	for i < len(s) && (isIdentByte(s[i]) || s[i] == '.') {
		i++
	}
	name := s[:i]
	if i == 0 || (i < len(s) && s[i] != ':') {
		return ""
	}
	short := name[strings.LastIndexByte(name, '.')+1:]
	switch {
	case short == "" || name[0] == '.' || (name[0] >= '0' && name[0] <= '9'):
		return ""
	case strings.HasSuffix(short, "Error"), strings.HasSuffix(short, "Exception"),
		short == "KeyboardInterrupt", short == "SystemExit", short == "StopIteration":
		return name
	}
	return ""
}

func isIdentByte(b byte) bool {
	return b == '_' || b == '$' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}
