package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// lineReader reads newline-separated records of at most max bytes. A longer record is
// skipped to its end and reported as errLineTooLong, so that one bad line never stops
// the lines after it.
type lineReader struct {
	r   *bufio.Reader
	max int
	buf []byte
	n   int // number of the line last returned
}

var errLineTooLong = errors.New("line too long")

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its newline and its number; io.EOF at the end.
// On errLineTooLong the line's number is valid and reading may go on.
func (l *lineReader) next() ([]byte, int, error) {
	l.buf = l.buf[:0]
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(l.buf)+len(chunk) > l.max+1 { // +1 for the newline
				tooLong, l.buf = true, l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(chunk) == 0 && len(l.buf) == 0 && !tooLong:
			return nil, l.n, io.EOF
		case err != nil && err != io.EOF:
			return nil, l.n, err
		}
		l.n++
		if tooLong {
			return nil, l.n, errLineTooLong
		}
		return bytes.TrimRight(l.buf, "\r\n"), l.n, nil
	}
}
