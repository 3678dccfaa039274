package forward

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Telnet protocol bytes (RFC 854).
const (
	telnetIAC  = 255
	telnetDONT = 254
	telnetDO   = 253
	telnetWONT = 252
	telnetWILL = 251
	telnetSB   = 250
	telnetSE   = 240
)

const (
	telnetBanner   = "-- sockmux telnet proxy: type the host to connect to and its port (23 if none), e.g. \"example.org 23\"; \"quit\" ends.\r\n"
	telnetPrompt   = ">> host port: "
	maxTelnetLine  = 1024
	maxTelnetTries = 10
)

// serveTelnet serves a client of the telnet-style prompt proxy, as
// DeleGate's proxy-Telnet: the user types "host [port]" (also "host:port",
// "telnet host port" or "open host port"), and the proxy connects there
// and steps aside. A destination that cannot be reached is reported and
// the prompt comes again.
func (p *proxySession) serveTelnet() {
	c := p.c
	if _, err := io.WriteString(c, telnetBanner); err != nil {
		return
	}
	for range maxTelnetTries {
		if _, err := io.WriteString(c, telnetPrompt); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(telnetPromptTimeout))
		line, err := readTelnetLine(c.r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.log.Info("telnet proxy client gone", "err", err)
			}
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		dest, err := parseTelnetDest(line)
		switch {
		case errors.Is(err, errTelnetQuit):
			_, _ = io.WriteString(c, "-- bye\r\n")
			return
		case errors.Is(err, errTelnetEmpty):
			continue
		case err != nil:
			_, _ = fmt.Fprintf(c, "-- %v\r\n", err)
			continue
		}
		up, err := p.connect(p.ctx, dest, "telnet")
		if err != nil {
			ce := asConnectError(err)
			p.failed(ce, dest, "telnet")
			_, _ = fmt.Fprintf(c, "-- cannot connect to %s: %s\r\n", dest, ce.reason)
			continue
		}
		if _, err := fmt.Fprintf(c, "-- connected to %s\r\n", dest); err != nil {
			up.Close()
			return
		}
		p.carry(up, dest, "telnet")
		return
	}
	_, _ = io.WriteString(c, "-- too many tries\r\n")
}

var (
	errTelnetQuit  = errors.New("quit")
	errTelnetEmpty = errors.New("empty line")
)

// parseTelnetDest turns what the user typed into host:port.
func parseTelnetDest(line string) (string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", errTelnetEmpty
	}
	switch strings.ToLower(f[0]) {
	case "quit", "exit", "bye", "q":
		return "", errTelnetQuit
	case "telnet", "open", "o", "connect":
		f = f[1:]
	}
	var host, port string
	switch len(f) {
	case 1:
		host, port = f[0], "23"
		if h, p, err := net.SplitHostPort(f[0]); err == nil {
			host, port = h, p
		} else if strings.HasPrefix(f[0], "[") && strings.HasSuffix(f[0], "]") {
			host = f[0][1 : len(f[0])-1]
		}
	case 2:
		host, port = strings.Trim(f[0], "[]"), f[1]
	default:
		return "", fmt.Errorf("type a host and a port, e.g. \"example.org 23\"")
	}
	if host == "" {
		return "", fmt.Errorf("no host given")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		p, lerr := net.LookupPort("tcp", port)
		if lerr != nil {
			return "", fmt.Errorf("%q is not a port", port)
		}
		n = p
	}
	if n < 1 || n > 65535 {
		return "", fmt.Errorf("%q is not a port", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// readTelnetLine reads one line, dropping telnet commands (option
// negotiation the client may start with), control characters and
// anything but printable ASCII, and applying backspaces.
func readTelnetLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		switch {
		case b == telnetIAC:
			if err := skipTelnetCommand(r); err != nil {
				return "", err
			}
		case b == '\n':
			return string(line), nil
		case b == '\r':
			if next, err := r.Peek(1); err == nil && (next[0] == '\n' || next[0] == 0) {
				_, _ = r.ReadByte()
			}
			return string(line), nil
		case b == 8 || b == 127:
			if len(line) > 0 {
				line = line[:len(line)-1]
			}
		case b < 32 || b > 126:
		default:
			if len(line) >= maxTelnetLine {
				return "", fmt.Errorf("line longer than %d characters", maxTelnetLine)
			}
			line = append(line, b)
		}
	}
}

// skipTelnetCommand skips what follows an IAC.
func skipTelnetCommand(r *bufio.Reader) error {
	cmd, err := r.ReadByte()
	if err != nil {
		return err
	}
	switch cmd {
	case telnetWILL, telnetWONT, telnetDO, telnetDONT:
		_, err = r.ReadByte()
	case telnetSB:
		for n := 0; ; n++ {
			b, err := r.ReadByte()
			if err != nil {
				return err
			}
			if b == telnetIAC {
				if b, err = r.ReadByte(); err != nil || b == telnetSE {
					return err
				}
			}
			if n > maxTelnetLine {
				return fmt.Errorf("telnet subnegotiation too long")
			}
		}
	}
	return err
}
