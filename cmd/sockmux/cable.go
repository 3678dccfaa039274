package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sockmux/sockmux/cable"
	"github.com/sockmux/sockmux/serialport"
)

// cableCommand is "sockmux cable": a virtual null-modem cable between two
// pseudo-terminals, paced like a UART, with fault injection.
func cableCommand() *cli.Command {
	return &cli.Command{
		Name:      "cable",
		Usage:     "run a virtual null-modem cable between two pseudo-terminals, for trying sockmux without hardware",
		ArgsUsage: "PATH_A PATH_B",
		Description: `Creates two pseudo-terminals, links them at PATH_A and PATH_B and carries bytes
between them like a serial cable between two UARTs at --baud, injecting the
faults asked for in each direction. Point "sockmux link --comm PATH_A" at one
end and "sockmux link --comm PATH_B" at the other.

The cable follows the speed each program sets on its end: each direction is
paced at the sending end's speed, and bytes sent at a speed the receiving end
does not listen at arrive as the framing garbage a real UART would make of
them (both ends start at --baud; --fixed-rate turns this off). --latency
holds received bytes the way a USB adapter's latency timer does.

SIGUSR1 unplugs the cable for --unplug-for (both paths vanish, open ports get
a hang-up, new pseudo-terminals appear when it is plugged back in), or plugs
it back in at once if it is out. SIGINT or SIGTERM stops the cable and
removes the links.`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "baud", Value: 115200, Usage: "line speed in bits per second, and the speed both ends start at; 0 carries bytes as fast as possible"},
			&cli.BoolFlag{Name: "fixed-rate", Usage: "pace at --baud whatever speed the programs set on the ends, and never garble bytes for a rate mismatch"},
			&cli.IntFlag{Name: "max-baud", Usage: "the fastest rate the cable carries, in bits per second: what an end sends faster arrives as garbage (to try rate negotiation); 0: any"},
			&cli.IntFlag{Name: "marginal-above", Usage: "rates above this many bits per second (and up to --max-baud) the cable carries badly, with bit errors at --marginal-ber (a long cable)"},
			&cli.Float64Flag{Name: "marginal-ber", Usage: "with --marginal-above: the bit error rate of what an end sends faster than it (e.g. 1e-3)"},
			&cli.BoolFlag{Name: "half-duplex", Usage: "one bus for both directions (RS-485 two-wire, a radio modem): bytes both ends send at the same time collide and arrive garbled at both, and each end hears its own bytes"},
			&cli.IntFlag{Name: "latency", Usage: "simulate USB adapters' latency timer of `MS` milliseconds at both ends (FTDI: 16): received bytes go out in batches of up to 62, when full or when the timer expires"},
			&cli.IntFlag{Name: "data-bits", Value: 8, Usage: "data bits per character (5-8), for the time a byte takes on the line"},
			&cli.StringFlag{Name: "parity", Value: "none", Usage: "parity: none, odd, even, mark or space, for the time a byte takes on the line"},
			&cli.StringFlag{Name: "stop-bits", Value: "1", Usage: "stop bits: 1, 1.5 or 2, for the time a byte takes on the line"},
			&cli.Float64Flag{Name: "ber", Usage: "bit error rate: the probability that each bit is flipped (e.g. 1e-5)"},
			&cli.Float64Flag{Name: "drop", Usage: "the probability that each byte is lost"},
			&cli.Float64Flag{Name: "insert", Usage: "the probability that a random garbage byte appears before each byte"},
			&cli.Float64Flag{Name: "dup", Usage: "the probability, per byte, that the last 1-16 bytes arrive twice"},
			&cli.DurationFlag{Name: "burst-every", Usage: "make a noise burst this often (e.g. 10s); needs --burst-for"},
			&cli.DurationFlag{Name: "burst-for", Usage: "how long a noise burst garbles every byte (e.g. 200ms)"},
			&cli.DurationFlag{Name: "unplug-every", Usage: "unplug the cable this often (e.g. 30s), for --unplug-for"},
			&cli.DurationFlag{Name: "unplug-for", Value: 3 * time.Second, Usage: "how long the cable stays unplugged, on the --unplug-every schedule or after SIGUSR1"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the fault injection, to repeat a run; 0 picks one and logs it"},
			&cli.DurationFlag{Name: "report-every", Value: 10 * time.Second, Usage: "log what was carried and injected this often; 0 only at exit"},
		},
		Action: runCable,
	}
}

func runCable(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("cable needs two paths, PATH_A and PATH_B (got %d arguments); e.g. sockmux cable /tmp/ttyA /tmp/ttyB", c.NArg())
	}
	baud := c.Int("baud")
	if baud < 0 {
		return fmt.Errorf("cable: --baud %d must not be negative (0 means unpaced)", baud)
	}
	framing := serialport.Mode{Baud: max(baud, 1), DataBits: c.Int("data-bits"), Parity: c.String("parity"), StopBits: c.String("stop-bits")}
	if err := framing.Validate(); err != nil {
		return fmt.Errorf("cable: %w", err)
	}
	latency := c.Int("latency")
	if latency < 0 || latency > 1000 {
		return fmt.Errorf("cable: --latency %d must be between 0 and 1000 milliseconds (an FTDI adapter's timer is 1 to 255, 16 by default)", latency)
	}
	unplugFor := c.Duration("unplug-for")
	if unplugFor <= 0 {
		return errors.New("cable: --unplug-for must be positive")
	}
	cfg := cable.Config{
		PathA:        c.Args().Get(0),
		PathB:        c.Args().Get(1),
		Baud:         baud,
		BitsPerByte:  framing.BitsPerByte(),
		FixedRate:    c.Bool("fixed-rate"),
		HalfDuplex:   c.Bool("half-duplex"),
		MaxBaud:      c.Int("max-baud"),
		MarginalBaud: c.Int("marginal-above"),
		MarginalBER:  c.Float64("marginal-ber"),
		Latency:      time.Duration(latency) * time.Millisecond,
		Faults: cable.Faults{
			BER:        c.Float64("ber"),
			DropRate:   c.Float64("drop"),
			InsertRate: c.Float64("insert"),
			DupRate:    c.Float64("dup"),
			BurstEvery: c.Duration("burst-every"),
			BurstFor:   c.Duration("burst-for"),
		},
		Seed:        c.Uint64("seed"),
		ReportEvery: c.Duration("report-every"),
		Log:         slog.Default(),
	}
	if every := c.Duration("unplug-every"); every > 0 {
		cfg.UnplugEvery, cfg.UnplugFor = every, unplugFor
	}
	log := cfg.Log

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cb, err := cable.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer cb.Close()

	toggle := make(chan os.Signal, 1)
	if cable.UnplugSignal != nil {
		signal.Notify(toggle, cable.UnplugSignal)
		defer signal.Stop(toggle)
	}
	for {
		select {
		case <-ctx.Done():
			return cb.Close()
		case <-toggle:
			if cb.Plugged() {
				log.Info(fmt.Sprintf("cable: SIGUSR1: unplugging for %v", unplugFor))
				err = cb.Unplug(unplugFor)
			} else {
				log.Info("cable: SIGUSR1: plugging back in")
				err = cb.Replug()
			}
			if err != nil {
				log.Error(fmt.Sprintf("cable: %v", err))
			}
		}
	}
}
