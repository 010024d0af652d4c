package stream

// batch holds the values of one batch publish until they are delivered.
type batch []loopValue

// deliver hands the batch's values to the flush loops together (each loop
// takes them under one lock), so a subscriber of several of them gets them
// in one write.
func (b batch) deliver(fs *flushSet) {
	if len(b) > 0 {
		fs.offer(b...)
	}
}
