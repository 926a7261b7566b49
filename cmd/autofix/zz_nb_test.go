package main

import (
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/models"
)

type nbClassifier struct {
	c  *classifier.Classifier
	fb *models.Fallback
}

func TestZZNBEval(t *testing.T) {
	path := os.Getenv("NBEVAL")
	if path == "" {
		t.Skip()
	}
	items, err := readLabelledFiles([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	c, err := classifier.LoadDefault(classifier.Sources{ModelFile: classifier.NoModel}, classifier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := models.DefaultFallback()
	var cat, ret, fr, neg int
	for _, it := range items {
		cl := c.Classify(&it.Event)
		if cl.Category == failure.Unknown {
			k, p := fb.Predict(models.FallbackText(&it.Event))
			if k != failure.Unknown && p >= 0.8 {
				cl.Category, cl.Retryable = k, k.DefaultRetryable()
			}
		}
		if cl.Category == it.Expected.Category {
			cat++
		}
		if cl.Retryable == it.Expected.Retryable {
			ret++
		}
		if !it.Expected.Retryable {
			neg++
			if cl.Retryable {
				fr++
			}
		}
	}
	n := float64(len(items))
	fmt.Printf("rules+NB: events %d category %.3f retry %.3f false retries %d/%d (%.1f%%)\n", len(items), float64(cat)/n, float64(ret)/n, fr, neg, 100*float64(fr)/math.Max(1, float64(neg)))
}
