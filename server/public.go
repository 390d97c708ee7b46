package server

import (
	"context"

	"github.com/liveforum/liveforum/rooms"
	"github.com/liveforum/liveforum/web"
)

// PublicRooms lists the registry's rooms marked "listed", for the web app's landing page
// (web.Options.PublicRooms).
func PublicRooms(reg *rooms.Registry) func(context.Context) ([]web.PublicRoom, error) {
	return func(ctx context.Context) ([]web.PublicRoom, error) {
		all, err := reg.List(ctx)
		if err != nil {
			return nil, err
		}
		var out []web.PublicRoom
		for _, st := range all {
			if st.Listed {
				out = append(out, web.PublicRoom{Name: st.Name, Title: st.Title, Languages: st.Languages,
					Guests: st.Guests, Members: st.Members})
			}
		}
		return out, nil
	}
}
