// Command kubectl_output prints a JSON document as kubectl's own printers do: -o jsonpath
// (k8s.io/cli-runtime's JSONPath printer over k8s.io/client-go/util/jsonpath), -o
// custom-columns and --sort-by (k8s.io/kubectl/pkg/cmd/get), the items being the document's
// "gateways". The test tier compares the plugin's output with this one's; nothing here is
// the plugin's code.
//
//	kubectl_output -mode jsonpath -expr '{.gateways[*].name}' [-allow-missing=false] < doc.json
//	kubectl_output -mode custom-columns -expr 'NAME:.name' [-no-headers] [-sort-by .name] < doc.json
//
// An error is one line on stderr starting "error: " and exit status 1.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/kubectl/pkg/cmd/get"
)

func main() {
	mode := flag.String("mode", "jsonpath", "jsonpath or custom-columns")
	expr := flag.String("expr", "", "the template or the columns spec")
	noHeaders := flag.Bool("no-headers", false, "custom-columns without the header line")
	sortBy := flag.String("sort-by", "", "sort the gateways by this JSONPath field")
	allowMissing := flag.Bool("allow-missing", true, "--allow-missing-template-keys")
	flag.Parse()
	if err := run(*mode, *expr, *noHeaders, *sortBy, *allowMissing, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "error: %s\n", strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}

func run(mode, expr string, noHeaders bool, sortBy string, allowMissing bool, in io.Reader,
	out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	doc := map[string]interface{}{}
	// apimachinery's json: whole numbers become int64, as in kubectl's unstructured objects.
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	items, _ := doc["gateways"].([]interface{})
	objs := make([]runtime.Object, len(items))
	for i, item := range items {
		fields, _ := item.(map[string]interface{})
		objs[i] = &unstructured.Unstructured{Object: fields}
	}
	if sortBy != "" && len(objs) > 0 {
		sorter, err := get.SortObjects(unstructured.UnstructuredJSONScheme, objs, sortBy)
		if err != nil {
			return err
		}
		sorted := make([]interface{}, len(objs))
		for i := range objs {
			sorted[i] = items[sorter.OriginalPosition(i)]
		}
		items = sorted
		doc["gateways"] = sorted
		for i, item := range sorted {
			objs[i] = &unstructured.Unstructured{Object: item.(map[string]interface{})}
		}
	}
	switch mode {
	case "jsonpath":
		template := expr
		flags := genericclioptions.NewJSONPathPrintFlags(template, false)
		flags.AllowMissingKeys = &allowMissing
		printer, err := flags.ToPrinter("jsonpath")
		if err != nil {
			return err
		}
		return printer.PrintObj(&unstructured.Unstructured{Object: doc}, out)
	case "custom-columns":
		printer, err := get.NewCustomColumnsPrinterFromSpec(expr, unstructured.UnstructuredJSONScheme,
			noHeaders)
		if err != nil {
			return err
		}
		w := printers.GetNewTabWriter(out)
		defer w.Flush()
		for _, obj := range objs {
			if err := printer.PrintObj(obj, w); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}
