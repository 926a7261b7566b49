package classifier

// WithKnowledge returns a classifier with c's rules, model and options and the
// knowledge tables k (nil: none): to try candidate tables exactly as c would apply
// them (autofix rules diff, POST /v1/rules:diff).
func (c *Classifier) WithKnowledge(k *Knowledge) *Classifier {
	o := c.opts
	o.Knowledge = k
	return New(c.rules, o)
}
