package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/autofix/autofix/sim"
)

// plotResults writes a PNG of each policy's retry cost (as a multiple of the oracle's)
// against its fix rate.
func plotResults(path, scenario string, results []sim.Result) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Retry policies on the %q scenario", scenario)
	p.X.Label.Text = "fix rate (remediable failures fixed)"
	p.Y.Label.Text = "retry cost / oracle's retry cost"
	p.X.Min, p.X.Max = 0, 1.05
	p.Add(plotter.NewGrid())

	var xys plotter.XYs
	var labels []string
	for _, r := range results {
		if r.Policy == "none" {
			continue // spends nothing and fixes nothing
		}
		xys = append(xys, plotter.XY{X: r.FixRate, Y: r.CostVsOracle})
		labels = append(labels, fmt.Sprintf("%s (first retry %.0f%%)", r.Policy, 100*r.FirstRetryRate))
	}
	points, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	points.Radius = vg.Points(4)
	points.Color = color.RGBA{R: 200, G: 40, B: 40, A: 255}
	p.Add(points)
	names, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return err
	}
	for i := range names.TextStyle {
		names.TextStyle[i].XAlign = -0.05
	}
	p.Add(names)
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
