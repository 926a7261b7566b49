package failure

// Classification is what the classifier concluded about a failure, and why.
type Classification struct {
	Category  Category `json:"category"`
	Retryable bool     `json:"retryable"`
	Action    Action   `json:"action"`
	// Confidence is in [0, 1]: how sure the rules that support Category are.
	Confidence float64 `json:"confidence"`
	// Rules are the ids of the rules that support Category, strongest first.
	Rules []string `json:"rules"`
	// Evidence are the lines of the failure's reason, message and log tail that
	// the supporting rules matched, in the order they appear.
	Evidence []string `json:"evidence"`
	// Alternatives are the other categories some rule matched, strongest first.
	Alternatives []Alternative `json:"alternatives,omitempty"`
	// Learned is set when no rule explained the failure with confidence and the
	// category comes from the learned text classifier instead.
	Learned bool `json:"learned,omitempty"`
}

// Alternative is a category that some rules matched but that did not win.
type Alternative struct {
	Category   Category `json:"category"`
	Confidence float64  `json:"confidence"`
	Rules      []string `json:"rules"`
}
