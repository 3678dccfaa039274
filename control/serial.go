package control

import (
	"fmt"
	"strings"

	"github.com/sockmux/sockmux/serialport"
)

// renderSerial writes the status lines of a serial port's modem lines and
// receive errors; nothing for other transports.
func renderSerial(b *strings.Builder, s *serialport.LineStatus) {
	if s == nil {
		return
	}
	lines := s.LinesNote
	if s.Lines != nil {
		lines = s.Lines.String()
	}
	if s.Carrier != "" {
		lines += "  (carrier " + strings.ToUpper(s.Carrier) + ")"
	}
	fmt.Fprintf(b, "lines      %s\n", lines)
	if e := s.Errors; e != nil {
		fmt.Fprintf(b, "rx errors  %d framing, %d parity, %d overrun, %d buffer overrun, %d breaks\n", e.Frame, e.Parity, e.Overrun, e.BufferOverrun, e.Break)
	} else {
		fmt.Fprintf(b, "rx errors  %s\n", s.ErrorsNote)
	}
}

// writeSerialMetrics writes a serial port's lines and error counters, each
// only where the port has it: a missing series is not available, not 0.
func writeSerialMetrics(b *strings.Builder, lbl string, s *serialport.LineStatus) {
	if s == nil {
		return
	}
	name := strings.TrimSuffix(lbl, "}")
	if m := s.Lines; m != nil {
		fmt.Fprintf(b, "# HELP sockmux_serial_line The serial port's modem-control lines: 1 raised, 0 low.\n# TYPE sockmux_serial_line gauge\n")
		for _, l := range []struct {
			n string
			v bool
		}{{"dtr", m.DTR}, {"rts", m.RTS}, {"dcd", m.DCD}, {"dsr", m.DSR}, {"cts", m.CTS}, {"ri", m.RI}} {
			v := 0
			if l.v {
				v = 1
			}
			fmt.Fprintf(b, "sockmux_serial_line%s,line=\"%s\"} %d\n", name, l.n, v)
		}
	}
	if e := s.Errors; e != nil {
		fmt.Fprintf(b, "# HELP sockmux_serial_receive_errors_total Characters received with an error, and breaks, as the serial driver counted them (TIOCGICOUNT).\n# TYPE sockmux_serial_receive_errors_total counter\n")
		for _, k := range []struct {
			n string
			v uint64
		}{{"frame", e.Frame}, {"parity", e.Parity}, {"overrun", e.Overrun}, {"buffer_overrun", e.BufferOverrun}, {"break", e.Break}} {
			fmt.Fprintf(b, "sockmux_serial_receive_errors_total%s,kind=\"%s\"} %d\n", name, k.n, k.v)
		}
	}
}
