package limiter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrLimited is returned when a key has used up its tokens.
var ErrLimited = errors.New("limiter: rate limit exceeded")

// Config describes one bucket: Rate tokens per Per, at most Burst at once.
type Config struct {
	Rate  int
	Per   time.Duration
	Burst int
}

type bucket struct {
	tokens   float64
	updated  time.Time
	requests int
}

// Limiter is a token bucket per key.
type Limiter struct {
	mu      sync.Mutex
	config  Config
	buckets map[string]*bucket
	now     func() time.Time
}

// New returns a limiter with the given configuration.
func New(config Config) (*Limiter, error) {
	if config.Rate <= 0 {
		return nil, fmt.Errorf("limiter: rate must be positive, got %d", config.Rate)
	}
	if config.Per <= 0 {
		config.Per = time.Second
	}
	if config.Burst < config.Rate {
		config.Burst = config.Rate
	}
	return &Limiter{
		config:  config,
		buckets: make(map[string]*bucket),
		now:     time.Now,
	}, nil
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	elapsed := now.Sub(b.updated)
	if elapsed <= 0 {
		return
	}
	perToken := float64(l.config.Per) / float64(l.config.Rate)
	b.tokens += float64(elapsed) / perToken
	if b.tokens > float64(l.config.Burst) {
		b.tokens = float64(l.config.Burst)
	}
	b.updated = now
}

// Allow takes one token for key and reports whether there was one.
func (l *Limiter) Allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(l.config.Burst), updated: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.requests++
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Wait blocks until key has a token or ctx is done.
func (l *Limiter) Wait(ctx context.Context, key string) error {
	ticker := time.NewTicker(l.config.Per / time.Duration(l.config.Rate))
	defer ticker.Stop()
	for {
		if l.Allow(key) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// Forget drops buckets that have been full for longer than idle.
func (l *Limiter) Forget(idle time.Duration) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	removed := 0
	for key, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= float64(l.config.Burst) && now.Sub(b.updated) >= idle {
			delete(l.buckets, key)
			removed++
		}
	}
	return removed
}

// Usage is the number of requests seen per key.
type Usage struct {
	Key      string
	Requests int
}

// Top returns the n busiest keys.
func (l *Limiter) Top(n int) []Usage {
	l.mu.Lock()
	usage := make([]Usage, 0, len(l.buckets))
	for key, b := range l.buckets {
		usage = append(usage, Usage{Key: key, Requests: b.requests})
	}
	l.mu.Unlock()
	sort.Slice(usage, func(i, j int) bool {
		if usage[i].Requests != usage[j].Requests {
			return usage[i].Requests > usage[j].Requests
		}
		return usage[i].Key < usage[j].Key
	})
	if len(usage) > n {
		usage = usage[:n]
	}
	return usage
}

func clientKey(r *http.Request) string {
	if forwarded := r.Header.Get("X-Forwarded-For"); forwarded != "" {
		parts := strings.Split(forwarded, ",")
		return strings.TrimSpace(parts[0])
	}
	host := r.RemoteAddr
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	return host
}

// Middleware rejects requests over the limit with 429 Too Many Requests.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r)
		if !l.Allow(key) {
			w.Header().Set("Retry-After", fmt.Sprintf("%.0f", l.config.Per.Seconds()))
			http.Error(w, ErrLimited.Error(), http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}
