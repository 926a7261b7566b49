package registry

import (
	"context"
	"errors"
	"time"
)

// Poll makes the models in use the active version of the registry if they are not
// already: it reads the active version (one row), and when it has changed loads it,
// swaps it in (InUse) and calls OnChange. A version that does not load is reported
// once, as a *LoadError, and the models in use are kept until another version is
// made active. An empty registry changes nothing. It then does the same for the
// version evaluated in shadow (Shadowed, OnShadow), which logs a version that does
// not load rather than return it. Calls are serialised.
func (r *Registry) Poll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.pollActive(ctx)
	var le *LoadError
	if err != nil && !errors.As(err, &le) {
		return err
	}
	if serr := r.pollShadow(ctx); serr != nil {
		return serr
	}
	return err
}

func (r *Registry) pollActive(ctx context.Context) error {
	active, err := r.o.Ledger.ActiveModel(ctx)
	if err != nil {
		return err
	}
	if active == 0 || active == r.inUse.Load().Version || active == r.failed {
		return nil
	}
	_, m, err := r.load(ctx, active)
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			r.failed = active
		}
		return err
	}
	r.failed = 0
	r.inUse.Store(&InUse{Version: active, Models: m})
	if r.o.OnChange != nil {
		r.o.OnChange(active, m)
	}
	return nil
}

// Run polls every interval until ctx ends, logging what goes wrong: a version that
// does not load (the models in use are kept), or a ledger that does not answer (the
// next poll tries again).
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := r.InUse().Version
		err := r.Poll(ctx)
		var le *LoadError
		switch {
		case errors.As(err, &le):
			r.log.Error("the active model version does not load: keeping the models in use", "active", le.Version,
				"inUse", before, "err", le.Err)
		case err != nil && ctx.Err() == nil:
			r.log.Warn("model registry: could not read the active version or the shadowed one; trying again", "err", err, "in", interval)
		case err == nil && r.InUse().Version != before:
			in := r.InUse()
			r.log.Info("models: now running the active version", "version", in.Version, "name", in.Models.Name, "was", before)
		}
	}
}
