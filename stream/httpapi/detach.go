package httpapi

import (
	"bufio"
	"net"
	"reflect"

	"github.com/gofiber/fiber/v2"
)

// Detaching a WebSocket from its upgrade handler, for memory.
//
// fasthttp runs an upgraded connection's handler on the goroutine that did
// the upgrade and keeps, until it returns, the request's RequestCtx with its
// header buffers (about 3 KiB); gofiber/contrib/websocket keeps its copies
// of the headers, cookies and query meanwhile, and the goroutine keeps the
// stack that the HTTP exchange and the upgrade grew. For an idle
// subscribed connection that was a third of its memory. So the handler
// opens the session, starts the read loop on a fresh goroutine, whose
// stack holds only that, and returns: fasthttp and contrib take back what
// they held.
//
// Two conditions make that safe. fasthttp must not close the connection
// when the handler returns (Server.KeepHijackedConns, which Register sets;
// runWS closes it itself, as it always did). And the connection must read
// the socket directly: fasthttp hands a hijacked connection its request
// reader when the client sent bytes behind the handshake request (before
// the server's answer, which RFC 6455 forbids), and takes that reader back
// for reuse when the handler returns. Such a connection is run on the
// handler's goroutine as before.

// keepHijacked makes fasthttp leave hijacked connections open when r is
// the app itself (the setting is the fasthttp server's).
func (s *Server) keepHijacked(r fiber.Router) {
	if app, ok := r.(*fiber.App); ok && app.Server() != nil {
		app.Server().KeepHijackedConns = true
		s.detachWS = true
	}
}

var bufioReaderType = reflect.TypeOf((*bufio.Reader)(nil))

// detachable reports whether the hijacked connection nc reads the socket
// directly, not through fasthttp's request reader. fasthttp does not export
// its hijacked connection type, so this looks at the field holding the
// reader; anything unexpected answers false (run on the handler's
// goroutine, which is always safe).
func detachable(nc net.Conn) bool {
	v := reflect.ValueOf(nc)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct || v.Type().Name() != "hijackConn" || v.Type().PkgPath() != "github.com/valyala/fasthttp" {
		return false
	}
	r := v.FieldByName("r")
	if !r.IsValid() || r.Kind() != reflect.Interface || r.IsNil() {
		return false
	}
	return r.Elem().Type() != bufioReaderType
}

// serveDetached is serveOpened on its own goroutine, with the panic
// handling the upgrade handler's goroutine had.
func (s *Server) serveDetached(wc *wsConn) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in a WebSocket connection", "panic", r)
			wc.shutdown(closeInternal, "internal error")
		}
	}()
	s.serveOpened(wc)
}
