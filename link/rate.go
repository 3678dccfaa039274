package link

import "fmt"

// lineRate is the line rate now, in bytes per second (0: unpaced): the
// driver's Properties().LineRate until SetLineRate changes it. Any
// goroutine may ask.
func (l *Link) lineRate() int { return int(l.rate.Load()) }

// SetLineRate tells the link that the line now carries rate bytes per
// second: a serial driver switched its port's speed under the open
// transport (--baud auto). The writer paces at the new rate from its next
// frame; the retransmission timer follows it; and everything sent but not
// yet acknowledged is due again at once, since what crossed the line while
// the two ends' speeds differed arrived as garbage. Frame sizes and the
// window, sized when the link was made, stay as they are.
//
// It fails on a link whose transport is not paced (Properties().LineRate
// 0 at New), and for a rate that is not positive.
func (l *Link) SetLineRate(rate int) error {
	switch {
	case l.props.LineRate == 0:
		return fmt.Errorf("link: the line rate of %s cannot change: it is not a paced line", l.drv.String())
	case rate <= 0:
		return fmt.Errorf("link: line rate %d bytes per second: must be positive", rate)
	}
	l.rate.Store(int64(rate))
	l.mu.Lock()
	l.sender.lineRate = rate
	l.sender.rto = l.sender.computeRTO()
	l.sender.resendAll(false)
	l.mu.Unlock()
	l.Notify()
	return nil
}

// setRate makes the pacer pace at rate (positive) from now on, keeping
// how late its wake-ups come.
func (p *pacer) setRate(rate int) {
	p.rate = rate
	p.base = max(leadMin, lineTime(24, rate))
	p.adapt()
}
