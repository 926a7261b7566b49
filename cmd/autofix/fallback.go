package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/models"
)

func newTrainFallbackCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "train-fallback FILE...",
		Short: "Train the learned text classifier on labelled failure messages",
		Long: `Train-fallback trains the learned fallback — a Bernoulli naive Bayes classifier of
failure text, used for failures no rule explains with confidence — on labelled files
(the format of classify --eval), and writes its versioned artifact to --out.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out: required")
			}
			var examples []models.FallbackExample
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				items, err := classifier.ReadLabelled(f)
				_ = f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				for _, it := range items {
					examples = append(examples, models.FallbackExample{Text: models.FallbackText(&it.Event), Category: it.Expected.Category})
				}
			}
			fb, err := models.TrainFallback(examples, models.FallbackOptions{})
			if err != nil {
				return err
			}
			data, err := json.Marshal(fb)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil { //nolint:gosec // a model artifact is not secret
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trained on %d labelled messages; wrote %s\n", len(examples), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the trained classifier to this file")
	return cmd
}
