package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/autofix/autofix/sim"
)

// policyColors tell the policies apart; the glyph shapes do too, for points that
// overlap (autofix and the oracle often do).
var policyColors = []color.RGBA{
	{R: 120, G: 120, B: 120, A: 255},
	{R: 230, G: 130, B: 0, A: 255},
	{R: 150, G: 60, B: 190, A: 255},
	{R: 0, G: 110, B: 200, A: 255},
	{R: 200, G: 30, B: 30, A: 255},
	{R: 20, G: 150, B: 60, A: 255},
}

// plotResults writes a PNG of each policy's retry cost (as a multiple of the oracle's)
// against its fix rate, one marker per policy with a legend.
func plotResults(path, scenario string, results []sim.Result) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Retry policies on the %q scenario", scenario)
	if len(results) > 0 && results[0].Text == sim.TextReal {
		p.Title.Text += ", real failure text"
	}
	p.X.Label.Text = "fix rate (remediable failures fixed)"
	p.Y.Label.Text = "retry cost / oracle's retry cost"
	p.X.Min, p.X.Max = 0, 1.05
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Left, p.Legend.Top = true, false
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(10)

	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{},
		draw.PyramidGlyph{}, draw.RingGlyph{}, draw.CrossGlyph{}}
	n := 0
	for _, r := range results {
		if r.Policy == "none" {
			continue // spends nothing and fixes nothing
		}
		pt, err := plotter.NewScatter(plotter.XYs{{X: r.FixRate, Y: r.CostVsOracle}})
		if err != nil {
			return err
		}
		pt.Radius = vg.Points(5)
		pt.Color = policyColors[n%len(policyColors)]
		pt.Shape = shapes[n%len(shapes)]
		n++
		p.Add(pt)
		p.Y.Max = max(p.Y.Max, 1.12*r.CostVsOracle)
		p.Legend.Add(fmt.Sprintf("%s: fixes %.1f%%, %.1f%% on the first retry, %.2fx the oracle's cost",
			r.Policy, 100*r.FixRate, 100*r.FirstRetryRate, r.CostVsOracle), pt)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}
