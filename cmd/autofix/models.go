package main

import (
	"os"

	"github.com/autofix/autofix/models"
)

// loadModels reads a models artifact, or the embedded default models when path is "".
func loadModels(path string) (*models.Models, error) {
	if path == "" {
		return models.Default()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return models.Load(data)
}
