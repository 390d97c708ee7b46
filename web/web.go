// Package web is liveforum's browser app: plain ES modules, CSS and the seven language catalogs, embedded
// in the binary and served without a build step. The pages speak the websocket protocol themselves (the
// module static/js/forum-client.js); the Go side only serves files, the landing page's list of public rooms,
// and the security headers.
//
// Concurrency: the handlers are safe for concurrent use; Options is read-only after Routes.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/liveforum/liveforum/protocol"
)

//go:embed static
var embedded embed.FS

// PublicRoom is a room as the landing page lists it.
type PublicRoom struct {
	Name      string   `json:"name"`
	Title     string   `json:"title,omitempty"`
	Languages []string `json:"languages,omitempty"`
	Guests    bool     `json:"guests"`
	Members   int      `json:"members"`
}

// Options configure the web app.
type Options struct {
	// PublicRooms returns the rooms listed on the landing page (nil: none).
	PublicRooms func(ctx context.Context) ([]PublicRoom, error)
	// DevMode tells the pages that any room can be created by joining it as a guest.
	DevMode bool
	// Version is shown in the footer.
	Version string
}

// ContentSecurityPolicy is sent with every page: scripts, styles and connections only from this server,
// no inline script, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Routes returns a function that mounts the app on a router (server.Server.Handler takes it).
func Routes(o Options) func(chi.Router) {
	static, err := fs.Sub(embedded, "static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	files := http.FileServer(http.FS(static))
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := fs.ReadFile(static, name)
			if err != nil {
				http.Error(w, "missing page", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(body)
		}
	}
	return func(r chi.Router) {
		r.Group(func(r chi.Router) {
			r.Use(securityHeaders)
			r.Get("/", page("index.html"))
			r.Get("/r/{room}", func(w http.ResponseWriter, req *http.Request) {
				if protocol.ValidRoomName(chi.URLParam(req, "room")) != nil {
					w.Header().Set("Content-Type", "text/plain; charset=utf-8")
					w.WriteHeader(http.StatusNotFound)
					_, _ = w.Write([]byte("no such room: room names are letters, digits, '-', '_' and '.'\n"))
					return
				}
				page("room.html")(w, req)
			})
			r.Handle("/static/*", http.StripPrefix("/static/", cacheShort(files)))
			r.Get("/rooms.json", func(w http.ResponseWriter, req *http.Request) {
				list := []PublicRoom{}
				if o.PublicRooms != nil {
					ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
					defer cancel()
					l, err := o.PublicRooms(ctx)
					if err != nil {
						http.Error(w, "rooms unavailable", http.StatusServiceUnavailable)
						return
					}
					list = append(list, l...)
				}
				writeJSON(w, map[string]any{"rooms": list})
			})
			r.Get("/config.json", func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, map[string]any{"dev": o.DevMode, "version": o.Version})
			})
		})
	}
}

// securityHeaders sets the Content-Security-Policy and friends on every response of the app.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// cacheShort lets browsers keep static files briefly; they are revalidated by Last-Modified after that.
func cacheShort(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
